import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { NodeConfig } from "../config.js";
import { ConfinedDirectory, RefusedFileError } from "../isolation/confined-directory.js";
import {
  type PartitionAddress,
  RESOURCE_FILE,
  type ResourceFile,
  readResource,
  readResourceCopy,
  resourceRecordDirectory,
  type SlaposResource,
} from "../partitions.js";
import type { PartitionAddresses } from "./addresses.js";
import type { ChangeLog } from "./changes.js";
import { canonicalAddress } from "./host-network.js";

const RESOURCE_MODE = 0o644;

/** A partition an earlier run formatted, as its `.slapos-resource` records it. */
export interface RecordedPartition {
  index: number;
  reference: string;
  /** Format's record (partitions.ts readResource): exact text and mode, rewritten only when either must change. */
  text: string;
  mode: number;
  /** The partition's own copy, as format wrote it, or null when its user removed or replaced it. */
  copy: ResourceFile | null;
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
      .map((entry) => readRecordedPartition(config, entry, Number(entry.slice(base.length)))),
  );
  return new Map(
    recorded.filter((partition) => partition !== null).map((partition) => [partition.index, partition]),
  );
}

async function readRecordedPartition(
  config: NodeConfig,
  reference: string,
  index: number,
): Promise<RecordedPartition | null> {
  const path = join(config.instanceRoot, reference);
  const record = join(resourceRecordDirectory(config), `${reference}.slapos-resource`);
  const invalid = (reason: string) =>
    new Error(
      `${record} (or, without it, ${join(path, RESOURCE_FILE)}) is not a valid partition resource file (${reason}): restore it, or remove both to let format give ${reference} new addresses`,
    );
  const copy = await readResourceCopy(path).catch((error) => {
    // Not format's file: its user put something of its own in its place; written back below.
    if (error instanceof RefusedFileError || (error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  });
  const found = await readResource(config, reference).catch((error) => {
    if (error instanceof RefusedFileError) return null;
    throw error;
  });
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
  return { index, reference, text, mode, copy, addresses };
}

const RECORD_DIRECTORY_MODE = 0o755;

/**
 * Writes the partition's `.slapos-resource` and format's record of it (partitions.ts) unless they
 * already hold exactly `text`, mode 0644. Each is written beside the old one and renamed over it
 * (isolation/confined-directory.ts): a reader never sees half a file, and a link the partition's
 * user left in the way is replaced, not followed.
 */
export async function writeResource(
  config: NodeConfig,
  partitionPath: string,
  text: string,
  recorded: RecordedPartition | undefined,
  changes: ChangeLog,
  partition: string,
): Promise<void> {
  const file = join(partitionPath, RESOURCE_FILE);
  const intact = (found: ResourceFile | null | undefined) =>
    found?.text === text && found.mode === RESOURCE_MODE;
  if (!intact(recorded)) {
    const records = resourceRecordDirectory(config);
    await mkdir(records, { recursive: true, mode: RECORD_DIRECTORY_MODE });
    await ConfinedDirectory.with(records, (directory) =>
      directory.write(`${partition}.slapos-resource`, text, { mode: RESOURCE_MODE }),
    );
  }
  if (intact(recorded) && intact(recorded?.copy)) return;
  await ConfinedDirectory.with(partitionPath, (directory) =>
    directory.write(RESOURCE_FILE, text, { mode: RESOURCE_MODE }),
  );
  if (!recorded) changes.record(partition, `wrote ${file}`);
  else if (recorded.text !== text) changes.record(partition, `rewrote ${file}`);
  else if (recorded.copy?.text !== text)
    changes.record(partition, `restored ${file}: its user had changed it`);
  else
    changes.record(
      partition,
      `chmod 0644 ${file} (was 0${(recorded.copy?.mode ?? recorded.mode).toString(8)})`,
    );
}
