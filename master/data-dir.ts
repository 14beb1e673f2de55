import { randomBytes } from "node:crypto";
import {
  chmod,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  writeFile,
} from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";

/**
 * The data directory holds the CA's private key (in the database files, the WAL included) and
 * the admin's key: only the user running the master may enter it. Run at every start (and
 * after the database is opened and closed: PGlite copies its initial cluster in at 0666 and
 * chmods what Postgres creates to 0644 whatever the process umask is, so a umask alone cannot
 * keep its files private).
 */
export async function secureDataDir(dataDir: string): Promise<void> {
  // resolve() drops a trailing slash, through which lstat would follow a symbolic link.
  const path = resolve(dataDir);
  await mkdir(path, { recursive: true, mode: 0o700 });
  const info = await lstat(path);
  if (info.isSymbolicLink()) {
    const target = await realpath(path).catch(() => "a missing target");
    throw new Error(
      `the data directory ${path} is a symbolic link (to ${target}): the master keeps its CA key there and does not follow links; pass the real directory instead`,
    );
  }
  if (!info.isDirectory()) throw new Error(`the data directory ${path} exists and is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) {
    throw new Error(
      `the data directory ${path} belongs to uid ${info.uid}, not to the user running the master (uid ${uid}): it would hold the CA key where its owner can read it, and the master does not change the permissions of someone else's directory; run the master as that user or give it a directory of its own`,
    );
  }
  if ((info.mode & 0o777) !== 0o700) await chmod(path, 0o700);
  await makePrivate(path);
}

/**
 * Drops group and other permissions below `directory`, without following links. Safe against
 * someone swapping an entry for a link between lstat and chmod: the directory is already 0700
 * and ours, so nobody else can change its entries.
 */
async function makePrivate(directory: string): Promise<void> {
  for (const name of await readdir(directory)) {
    const path = join(directory, name);
    const info = await lstat(path);
    if (info.isSymbolicLink()) continue;
    if (info.mode & 0o077) {
      await chmod(path, info.mode & 0o7700).catch((error: NodeJS.ErrnoException) => {
        throw new Error(
          `cannot make ${path} private (mode ${(info.mode & 0o777).toString(8)}, owner uid ${info.uid}): ${error.code ?? error.message}; give it to the user running the master (chown) or remove it`,
        );
      });
    }
    if (info.isDirectory()) await makePrivate(path);
  }
}

/**
 * Writes a file only its owner can read, even over an existing file with a looser mode (a
 * mode given to writeFile applies only when it creates the file): the content goes to a new
 * 0600 file beside it, which then replaces the old one.
 */
export async function writePrivateFile(path: string, content: string): Promise<void> {
  const temporary = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const handle = await open(temporary, "wx", 0o600);
  try {
    // The umask could only remove bits; chmod states the mode outright.
    await handle.chmod(0o600);
    await handle.writeFile(content);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temporary, { force: true });
    throw error;
  }
  await handle.close();
  await rename(temporary, path).catch(async (error) => {
    await rm(temporary, { force: true });
    throw error;
  });
}

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
  await writeFile(pidFile, String(process.pid), { mode: 0o600 });
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
