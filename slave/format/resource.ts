import { constants } from "node:fs";
import { type FileHandle, open, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { NodeConfig } from "../config.js";
import { type PartitionAddress, RESOURCE_FILE, type SlaposResource } from "../partitions.js";
import type { PartitionAddresses } from "./addresses.js";
import type { ChangeLog } from "./changes.js";
import { canonicalAddress } from "./host-network.js";

const RESOURCE_MODE = 0o644;

/** A partition an earlier run formatted, as its `.slapos-resource` records it. */
export interface RecordedPartition {
  index: number;
  reference: string;
  /** The file's exact text and mode: it is rewritten only when either must change. */
  text: string;
  mode: number;
  /** Canonical addresses, kept on re-runs so that a partition is never renumbered. */
  addresses: PartitionAddress[];
}

export interface ResourceInput {
  reference: string;
  path: string;
  addresses: PartitionAddresses;
  tap: string | null;
  user: { name: string; shell: string; additionalGroups: string[] };
}

export function partitionResource(input: ResourceInput): SlaposResource {
  const { ipv4, ipv6 } = input.addresses;
  return {
    address_list: [
      { addr: ipv4.address, netmask: ipv4.netmask },
      { addr: ipv6.address, netmask: ipv6.netmask },
    ],
    external_storage_list: [],
    ipv6_range: {},
    path: input.path,
    reference: input.reference,
    tap: input.tap === null ? null : { name: input.tap },
    tun: null,
    user: {
      additional_group_list: input.user.additionalGroups,
      name: input.user.name,
      path: input.path,
      shell: input.user.shell,
    },
  };
}

/** As Python's `json.dumps(resource, sort_keys=True, indent=4)`, which slapformat writes. */
export function serializeResource(resource: SlaposResource): string {
  return JSON.stringify(
    resource,
    (_key, value: unknown) =>
      value !== null && typeof value === "object" && !Array.isArray(value)
        ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : value,
    4,
  );
}

/**
 * Opens a file of a partition directory without following links: the partition user owns the
 * directory and could leave a link to /etc/shadow where format, as root, reads or writes.
 */
function openNoFollow(path: string): Promise<FileHandle> {
  return open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
}

/** Every partition of instance_root that has a `.slapos-resource`, by index. */
export async function readRecordedPartitions(config: NodeConfig): Promise<Map<number, RecordedPartition>> {
  let entries: string[];
  try {
    entries = await readdir(config.instanceRoot);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw error;
  }
  const base = config.format.partitionBaseName;
  const recorded = await Promise.all(
    entries
      .filter((entry) => entry.startsWith(base) && `${base}${Number(entry.slice(base.length))}` === entry)
      .map((entry) =>
        readRecordedPartition(join(config.instanceRoot, entry), entry, Number(entry.slice(base.length))),
      ),
  );
  return new Map(
    recorded.filter((partition) => partition !== null).map((partition) => [partition.index, partition]),
  );
}

async function readRecordedPartition(
  path: string,
  reference: string,
  index: number,
): Promise<RecordedPartition | null> {
  const file = join(path, RESOURCE_FILE);
  const invalid = (reason: string) =>
    new Error(
      `${file} is not a valid partition resource file (${reason}): restore it, or remove it to let format give ${reference} new addresses`,
    );
  let handle: FileHandle;
  try {
    handle = await openNoFollow(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    if (code === "ELOOP") throw invalid("it is a symbolic link");
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw invalid("it is not a regular file");
    const text = await handle.readFile("utf8");
    let resource: SlaposResource;
    try {
      resource = JSON.parse(text) as SlaposResource;
    } catch (error) {
      throw invalid((error as Error).message);
    }
    if (!Array.isArray(resource?.address_list)) throw invalid("no address_list");
    const addresses = resource.address_list.map(({ addr, netmask }) => {
      if (typeof addr !== "string" || typeof netmask !== "string")
        throw invalid("an address without addr or netmask");
      try {
        return { address: canonicalAddress(addr), netmask };
      } catch (error) {
        throw invalid((error as Error).message);
      }
    });
    return { index, reference, text, mode: stats.mode % 0o10000, addresses };
  } finally {
    await handle.close();
  }
}

/** Writes the partition's `.slapos-resource` unless it already holds exactly `text`, mode 0644. */
export async function writeResource(
  partitionPath: string,
  text: string,
  recorded: RecordedPartition | undefined,
  changes: ChangeLog,
  partition: string,
): Promise<void> {
  const file = join(partitionPath, RESOURCE_FILE);
  if (recorded?.text === text) {
    if (recorded.mode === RESOURCE_MODE) return;
    const handle = await openNoFollow(file);
    await handle.chmod(RESOURCE_MODE).finally(() => handle.close());
    changes.record(partition, `chmod 0644 ${file} (was 0${recorded.mode.toString(8)})`);
    return;
  }
  // Written beside it and renamed over it, so that a reader never sees half a file; the
  // exclusive create never follows a link left in the way.
  const temporary = `${file}.tmp`;
  await unlink(temporary).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
  const handle = await open(temporary, "wx", RESOURCE_MODE);
  try {
    await handle.writeFile(text);
    await handle.chmod(RESOURCE_MODE);
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  changes.record(partition, `${recorded ? "rewrote" : "wrote"} ${file}`);
}
