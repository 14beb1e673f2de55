import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  rename,
  rmdir,
  stat,
  symlink,
  unlink,
} from "node:fs/promises";

// The one way root touches a directory another user owns (a partition, a software release being
// built). That user can replace any name in it by a symbolic link, a FIFO or a hard link at any
// moment, so nothing here resolves a path twice: the directory is held open, every component below
// it is opened through /proc/self/fd/<descriptor>/<name> (Linux's openat, which Node lacks) with
// O_NOFOLLOW, files are created with O_EXCL and renamed over the name, ownership and mode are set
// on descriptors, and what is read is checked with fstat and bounded. Nothing read is ever quoted
// in an error: it may be another tenant's secret the user tried to make root read.

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;

export interface Ownership {
  uid: number;
  gid: number;
}

export interface ReadOptions {
  /** Larger files are refused unread. */
  maxBytes: number;
  /** The file must belong to one of these uids (a hard link to someone else's file is refused). */
  owners?: number[];
}

export interface WriteOptions {
  mode: number;
  /** Owner of the new file; root's when absent. */
  owner?: Ownership;
}

/** A file that is not what root may read or replace: a link, a FIFO, too large, someone else's. */
export class RefusedFileError extends Error {}

function components(relative: string): string[] {
  const parts = relative.split("/");
  for (const part of parts) {
    if (part === "" || part === "." || part === ".." || part.includes("\0")) {
      throw new Error(`'${relative}' is not a plain relative path inside a confined directory`);
    }
  }
  return parts;
}

function isCode(error: unknown, ...codes: string[]): boolean {
  return codes.includes((error as NodeJS.ErrnoException).code ?? "");
}

/** A directory held open by descriptor; every operation stays inside it, whatever its owner does. */
export class ConfinedDirectory {
  private constructor(
    private readonly handle: FileHandle,
    /** For messages only: never resolved again. */
    readonly path: string,
  ) {}

  /**
   * Opens `path`, whose parents root trusts (instance_root, software_root) but whose last component
   * must be a real directory, not a link.
   */
  static async open(path: string): Promise<ConfinedDirectory> {
    try {
      return new ConfinedDirectory(await open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW), path);
    } catch (error) {
      if (isCode(error, "ELOOP", "ENOTDIR")) {
        throw new RefusedFileError(`${path} is not a directory (a link or a file is in its place)`);
      }
      throw error;
    }
  }

  /** Runs `work` on the directory at `path` and closes it. */
  static async with<T>(path: string, work: (directory: ConfinedDirectory) => Promise<T>): Promise<T> {
    const directory = await ConfinedDirectory.open(path);
    try {
      return await work(directory);
    } finally {
      await directory.close();
    }
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  /** The path the kernel resolves from this descriptor: `name` is looked up in this very directory. */
  private at(name: string): string {
    return `/proc/self/fd/${this.handle.fd}/${name}`;
  }

  private describe(relative: string): string {
    return `${this.path}/${relative}`;
  }

  /** The subdirectory at `relative`, opened without following any link; null when absent. */
  async subdirectory(relative: string): Promise<ConfinedDirectory | null> {
    let current: ConfinedDirectory = this;
    for (const name of components(relative)) {
      let next: FileHandle;
      try {
        next = await open(current.at(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      } catch (error) {
        if (current !== this) await current.close();
        if (isCode(error, "ENOENT")) return null;
        if (isCode(error, "ELOOP", "ENOTDIR")) {
          throw new RefusedFileError(`${this.describe(relative)}: '${name}' is not a directory`);
        }
        throw error;
      }
      if (current !== this) await current.close();
      current = new ConfinedDirectory(next, `${current.path}/${name}`);
    }
    return current;
  }

  /**
   * Makes the directories of `relative` exist (a name in the way that is not a real directory is
   * refused), new ones with `mode` and `owner`; returns the last, open.
   */
  async ensureSubdirectory(relative: string, options: WriteOptions): Promise<ConfinedDirectory> {
    let current: ConfinedDirectory = this;
    for (const name of components(relative)) {
      await mkdir(current.at(name), { mode: options.mode }).then(
        () => current.fixNew(name, options),
        (error) => {
          if (!isCode(error, "EEXIST")) throw error;
        },
      );
      const next = await current.subdirectory(name).finally(async () => {
        if (current !== this) await current.close();
      });
      if (!next) throw new Error(`${this.describe(relative)} vanished while it was being created`);
      current = next;
    }
    return current;
  }

  private async fixNew(name: string, options: WriteOptions): Promise<void> {
    const made = await open(this.at(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      await made.chmod(options.mode);
      if (options.owner) await made.chown(options.owner.uid, options.owner.gid);
    } finally {
      await made.close();
    }
  }

  /** Splits `relative` into its directory (opened) and its last name. */
  private async parentOf(
    relative: string,
    create?: WriteOptions,
  ): Promise<{ parent: ConfinedDirectory | null; name: string }> {
    const parts = components(relative);
    const name = parts.pop() as string;
    if (parts.length === 0) return { parent: this, name };
    const path = parts.join("/");
    const parent = create ? await this.ensureSubdirectory(path, create) : await this.subdirectory(path);
    return { parent, name };
  }

  private async release(parent: ConfinedDirectory | null): Promise<void> {
    if (parent && parent !== this) await parent.close();
  }

  /**
   * The text of the regular file at `relative`, or null when there is none. A link, a FIFO, a
   * device, a file over `maxBytes` or of another owner is refused, unread.
   */
  async read(relative: string, options: ReadOptions): Promise<string | null> {
    return (await this.readWithMode(relative, options))?.text ?? null;
  }

  /** As `read`, with the file's permission bits. */
  async readWithMode(relative: string, options: ReadOptions): Promise<{ text: string; mode: number } | null> {
    const { parent, name } = await this.parentOf(relative);
    if (!parent) return null;
    let file: FileHandle;
    try {
      file = await open(parent.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (error) {
      if (isCode(error, "ENOENT")) return null;
      if (isCode(error, "ELOOP")) throw new RefusedFileError(`${this.describe(relative)} is a symbolic link`);
      throw error;
    } finally {
      await this.release(parent);
    }
    try {
      const stats = await file.stat();
      const where = this.describe(relative);
      if (!stats.isFile()) throw new RefusedFileError(`${where} is not a regular file`);
      if (options.owners && !options.owners.includes(stats.uid)) {
        throw new RefusedFileError(`${where} belongs to uid ${stats.uid}, not to the partition`);
      }
      if (stats.size > options.maxBytes) {
        throw new RefusedFileError(`${where} holds ${stats.size} bytes, more than ${options.maxBytes}`);
      }
      // Read at most one byte past the limit: the file may grow after fstat.
      const buffer = Buffer.alloc(options.maxBytes + 1);
      let length = 0;
      while (length < buffer.length) {
        const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      if (length > options.maxBytes) {
        throw new RefusedFileError(`${where} grew past ${options.maxBytes} bytes while it was read`);
      }
      return { text: buffer.subarray(0, length).toString("utf8"), mode: stats.mode & 0o7777 };
    } finally {
      await file.close();
    }
  }

  /**
   * Replaces the file at `relative` by `content`: a new file, created exclusively beside it, given
   * its owner and mode by descriptor, then renamed over the name, so a link there is replaced,
   * never followed. Missing directories on the way are created with the same owner (mode 0750).
   */
  async write(relative: string, content: string | Buffer, options: WriteOptions): Promise<void> {
    const { parent, name } = await this.parentOf(relative, { mode: 0o750, owner: options.owner });
    if (!parent) throw new Error(`${this.describe(relative)}: no directory to write it in`);
    const temporary = `.${name}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      const file = await open(parent.at(temporary), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      try {
        await file.writeFile(content);
        if (options.owner) await file.chown(options.owner.uid, options.owner.gid);
        await file.chmod(options.mode);
      } finally {
        await file.close();
      }
      await rename(parent.at(temporary), parent.at(name));
    } catch (error) {
      await unlink(parent.at(temporary)).catch(() => {});
      throw error;
    } finally {
      await this.release(parent);
    }
  }

  /** Writes the file unless it already holds `content` (read as the regular file root wrote). */
  async writeIfChanged(relative: string, content: string, options: WriteOptions): Promise<boolean> {
    const current = await this.read(relative, {
      maxBytes: Buffer.byteLength(content),
      owners: [options.owner?.uid ?? 0],
    }).catch((error) => {
      if (error instanceof RefusedFileError) return null;
      throw error;
    });
    if (current === content) return false;
    await this.write(relative, content, options);
    return true;
  }

  /** Puts a symbolic link to `target` at `relative`, replacing whatever is there (never a directory's content). */
  async link(relative: string, target: string): Promise<void> {
    const { parent, name } = await this.parentOf(relative);
    if (!parent) throw new Error(`${this.describe(relative)}: no directory to link it in`);
    const temporary = `.${name}.${randomBytes(6).toString("hex")}.tmp`;
    try {
      await symlink(target, parent.at(temporary));
      await rename(parent.at(temporary), parent.at(name)).catch(async (error) => {
        await unlink(parent.at(temporary)).catch(() => {});
        if (!isCode(error, "EISDIR", "ENOTEMPTY", "EEXIST")) throw error;
        throw new RefusedFileError(`${this.describe(relative)} is a directory: remove it, then redeploy`);
      });
    } finally {
      await this.release(parent);
    }
  }

  /**
   * The names of the executable files in the directory at `relative`, sorted; none when it is
   * absent or not a real directory (a link to a directory root may list is not listed). An entry
   * may be a link, as buildout makes them: only whether its target is an executable file is read.
   */
  async executables(relative: string): Promise<string[]> {
    const directory = await this.subdirectory(relative).catch((error) => {
      if (error instanceof RefusedFileError) return null;
      throw error;
    });
    if (!directory) return [];
    try {
      const found: string[] = [];
      for (const name of (await readdir(directory.at(""))).sort()) {
        const info = await stat(directory.at(name)).catch(() => null);
        if (info?.isFile() && (info.mode & 0o111) !== 0) found.push(name);
      }
      return found;
    } finally {
      if (directory !== this) await directory.close();
    }
  }

  /** Removes the file, link or whole directory at `relative`, following no link; nothing when absent. */
  async remove(relative: string): Promise<void> {
    const { parent, name } = await this.parentOf(relative);
    if (!parent) return;
    try {
      await parent.removeEntry(name);
    } finally {
      await this.release(parent);
    }
  }

  /** Removes every entry of this directory except `keep`. */
  async empty(keep: string[] = []): Promise<void> {
    for (const name of await readdir(this.at(""))) {
      if (!keep.includes(name)) await this.removeEntry(name);
    }
  }

  private async removeEntry(name: string): Promise<void> {
    try {
      await unlink(this.at(name));
      return;
    } catch (error) {
      if (isCode(error, "ENOENT")) return;
      if (!isCode(error, "EISDIR", "EPERM")) throw error;
    }
    // A directory: emptied through its own descriptor, so a link swapped in meanwhile is never
    // descended into; emptied again if something was added meanwhile.
    for (let attempt = 1; ; attempt += 1) {
      const child = await this.subdirectory(name).catch((error) => {
        if (error instanceof RefusedFileError) return null;
        throw error;
      });
      if (child) {
        try {
          await child.empty();
        } finally {
          await child.close();
        }
      }
      const removed = await rmdir(this.at(name))
        .then(
          () => true,
          (error) => {
            if (isCode(error, "ENOTEMPTY") && attempt < 10) return false;
            throw error;
          },
        )
        .catch(async (error) => {
          if (isCode(error, "ENOENT")) return true;
          if (!isCode(error, "ENOTDIR")) throw error;
          // Swapped for a file or a link meanwhile: that goes too, unfollowed.
          await unlink(this.at(name)).catch((unlinkError) => {
            if (!isCode(unlinkError, "ENOENT")) throw unlinkError;
          });
          return true;
        });
      if (removed) return;
    }
  }
}
