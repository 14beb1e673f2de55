import { constants } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
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

async function executables(directory: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(directory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw error;
  }
  const found: string[] = [];
  for (const entry of entries.sort()) {
    // stat follows links: buildout commonly links etc/run entries to wrappers in bin/.
    const info = await stat(join(directory, entry)).catch(() => null);
    if (info?.isFile() && (info.mode & (constants.S_IXUSR | constants.S_IXGRP | constants.S_IXOTH)) !== 0) {
      found.push(entry);
    }
  }
  return found;
}

/**
 * The programs of a partition, sorted as slapgrid sorts them: etc/run first, then etc/service.
 * A name in both is run once, from etc/service, as slapgrid does.
 */
export async function scanPrograms(partitionPath: string): Promise<Program[]> {
  const byName = new Map<string, Program>();
  for (const [folder, watched] of [
    ["run", false],
    ["service", true],
  ] as const) {
    const directory = join(partitionPath, "etc", folder);
    for (const name of await executables(directory)) {
      assertConfigSafe(name, `the program name ${join(directory, name)}`);
      byName.set(name, {
        name,
        processName: watched ? `${name}${WATCH_MARK}` : name,
        command: join(directory, name),
        watched,
      });
    }
  }
  return [...byName.values()];
}
