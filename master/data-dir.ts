import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * The embedded database (PGlite) can only be opened by one process at a time: a master running
 * on a data directory holds `master.pid` there, and others (a second master, a backup) refuse
 * to open it instead of corrupting it.
 */
export async function claimDataDir(dataDir: string, purpose: string): Promise<() => Promise<void>> {
  const pidFile = join(dataDir, "master.pid");
  const owner = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10);
  if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
    throw new Error(
      `${dataDir} is in use by process ${owner} (a running master); stop it before the ${purpose}, or use a Postgres server (--database-url), which several processes can share`,
    );
  }
  await writeFile(pidFile, String(process.pid));
  return () => rm(pidFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
