import type { Stats } from "node:fs";
import { chmod, chown, mkdir, stat } from "node:fs/promises";
import type { ChangeLog } from "./changes.js";

export interface DirectorySpec {
  path: string;
  /** Exactly these permission bits: slapgrid refuses a partition whose mode is not 0750. */
  mode: number;
  /** Left as it is when absent. */
  owner?: { uid: number; gid: number };
  /** The partition reference the directory belongs to, for the change log. */
  partition?: string;
}

const octal = (mode: number) => `0${mode.toString(8)}`;

async function statIfExists(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

/** Creates the directory or brings its mode and owner back to the spec, recording what it did. */
export async function ensureDirectory(spec: DirectorySpec, changes: ChangeLog): Promise<void> {
  const { path, mode, owner, partition } = spec;
  const existing = await statIfExists(path);
  if (existing && !existing.isDirectory()) {
    throw new Error(`${path} exists but is not a directory: move it out of the way and run format again`);
  }
  const ownerWrong = owner !== undefined && (existing?.uid !== owner.uid || existing?.gid !== owner.gid);
  const modeWrong = (existing?.mode ?? 0) % 0o10000 !== mode;
  // mkdir's mode passes through the umask, so the mode is always set explicitly after it.
  if (!existing) await mkdir(path, { recursive: true, mode });
  if (owner && ownerWrong) await chown(path, owner.uid, owner.gid);
  if (modeWrong) await chmod(path, mode);
  const ownerText = owner ? `${owner.uid}:${owner.gid}` : "";
  if (!existing) {
    changes.record(partition, `created ${path} (mode ${octal(mode)}${owner ? `, owner ${ownerText}` : ""})`);
    return;
  }
  if (ownerWrong)
    changes.record(partition, `chown ${ownerText} ${path} (was ${existing.uid}:${existing.gid})`);
  if (modeWrong)
    changes.record(partition, `chmod ${octal(mode)} ${path} (was ${octal(existing.mode % 0o10000)})`);
}
