import { chmod, readFile, rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/**
 * Writes `content` unless the file already holds it; returns whether it wrote. The new content is
 * renamed into place, so supervisord never reads half a file; the temporary name does not end in
 * `.conf`, so the include pattern never picks it up.
 */
export async function writeIfChanged(path: string, content: string, mode: number): Promise<boolean> {
  if ((await readIfExists(path)) === content) {
    await chmod(path, mode);
    return false;
  }
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  await writeFile(temporary, content, { mode });
  // writeFile's mode is filtered by the umask.
  await chmod(temporary, mode);
  await rename(temporary, path);
  return true;
}

/** Deletes a file; returns whether it existed. */
export async function removeIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}
