import { ConfinedDirectory } from "../isolation/confined-directory.js";
import type { LocalPartition } from "../partitions.js";

// The marks the agent keeps in a partition (which version it deployed, which it banged), read and
// written through the partition's directory held by descriptor: its user may have planted links
// anywhere in it.

/** The desired-state timestamp last deployed; absent while a deployment is due. */
export const TIMESTAMP_FILE = ".timestamp";
/** The deployed timestamp the watchdog last banged for: one bang per deployment. */
export const LATEST_BANG_FILE = ".slapos_latest_bang_timestamp";

/** Marks are short: anything longer is not the agent's. */
const MAX_MARK_BYTES = 64;

export const AGENT_UID = process.getuid?.() ?? 0;

export function inPartition<T>(
  partition: Pick<LocalPartition, "path">,
  work: (directory: ConfinedDirectory) => Promise<T>,
): Promise<T> {
  return ConfinedDirectory.with(partition.path, work);
}

/** A mark the agent wrote, or null when absent, or not a file the agent wrote (its user may replace it). */
export function readMark(partition: Pick<LocalPartition, "path">, name: string): Promise<string | null> {
  return inPartition(partition, (directory) =>
    directory.read(name, { maxBytes: MAX_MARK_BYTES, owners: [AGENT_UID] }).catch(() => null),
  );
}

export function writeMark(
  partition: Pick<LocalPartition, "path">,
  name: string,
  value: string,
): Promise<void> {
  return inPartition(partition, (directory) => directory.write(name, value, { mode: 0o644 }));
}
