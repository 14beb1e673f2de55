import { join } from "node:path";
import { ConfinedDirectory } from "../isolation/confined-directory.js";
import { assertConfigSafe } from "./config.js";

/** An executable of a partition's etc/run or etc/service, as supervisord will run it. */
export interface Program {
  /** The file's name: `<reference>_<name>` is its program id. */
  name: string;
  /** `<name>` for etc/run, `<name>-on-watch` for etc/service (SlapOS's watchdog mark). */
  processName: string;
  command: string;
  /** An etc/service program, whose exit is reported to the master. */
  watched: boolean;
}

export const WATCH_MARK = "-on-watch";

/**
 * The programs of a partition, sorted as slapgrid sorts them: etc/run first, then etc/service.
 * A name in both is run once, from etc/service, as slapgrid does. The partition's user owns these
 * directories: they are listed by descriptor, never through a link to a directory of root's.
 */
export async function scanPrograms(partitionPath: string): Promise<Program[]> {
  const partition = await ConfinedDirectory.open(partitionPath).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  if (!partition) return [];
  const byName = new Map<string, Program>();
  try {
    for (const [folder, watched] of [
      ["run", false],
      ["service", true],
    ] as const) {
      const directory = join(partitionPath, "etc", folder);
      for (const name of await partition.executables(`etc/${folder}`)) {
        assertConfigSafe(name, `the program name ${join(directory, name)}`);
        byName.set(name, {
          name,
          processName: watched ? `${name}${WATCH_MARK}` : name,
          command: join(directory, name),
          watched,
        });
      }
    }
  } finally {
    await partition.close();
  }
  return [...byName.values()];
}
