import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { NodeConfig } from "../config.js";
import { ConfinedDirectory, RefusedFileError } from "../isolation/confined-directory.js";
import { type PartitionAddress, RESOURCE_FILE, readResource, type SlaposResource } from "../partitions.js";
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
  let found: { text: string; mode: number } | null;
  try {
    found = await readResource(path);
  } catch (error) {
    // Not format's file: its user put something of its own in its place. Format's plan decides
    // the partition's addresses again, and writes the file back.
    if (error instanceof RefusedFileError) return null;
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
  if (found === null) return null;
  const { text, mode } = found;
  let resource: SlaposResource;
  try {
    resource = JSON.parse(text) as SlaposResource;
  } catch {
    throw invalid("it is not JSON");
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
  return { index, reference, text, mode, addresses };
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
  if (recorded?.text === text && recorded.mode === RESOURCE_MODE) return;
  // Written beside it and renamed over it (isolation/confined-directory.ts): a reader never sees
  // half a file, and a link the partition's user left in the way is replaced, not followed.
  await ConfinedDirectory.with(partitionPath, (directory) =>
    directory.write(RESOURCE_FILE, text, { mode: RESOURCE_MODE }),
  );
  if (recorded?.text === text) {
    changes.record(partition, `chmod 0644 ${file} (was 0${recorded.mode.toString(8)})`);
  } else {
    changes.record(partition, `${recorded ? "rewrote" : "wrote"} ${file}`);
  }
}
