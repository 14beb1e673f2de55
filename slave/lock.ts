import { mkdir, open, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { isAlive } from "./proc.js";

/**
 * One agent at a time per node: a pid file taken with O_EXCL. A file left by a dead process is
 * taken over; a live holder is named in the error.
 */
export async function acquireAgentLock(path: string): Promise<() => Promise<void>> {
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const handle = await open(path, "wx", 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const holder = Number((await readFile(path, "utf8").catch(() => "")).trim());
      if (Number.isInteger(holder) && holder > 0 && (await isAlive(holder))) {
        throw new Error(
          `another slap agent (pid ${holder}) is working on this node; wait for it or stop it (lock ${path})`,
        );
      }
      await rm(path, { force: true });
    }
  }
  throw new Error(`cannot take the agent lock ${path}`);
}
