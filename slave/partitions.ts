import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { NodeConfig } from "./config.js";
import { ConfinedDirectory, RefusedFileError } from "./isolation/confined-directory.js";

export interface PartitionAddress {
  address: string;
  netmask: string;
}

/** A partition as it exists on this node, what `format` made. */
export interface LocalPartition {
  /** `slappartN`: the name the master knows it by. */
  reference: string;
  index: number;
  /** `<instance_root>/slappartN`. */
  path: string;
  /** The partition's user; uid and gid are the owner of its directory, as slapgrid does. */
  user: { name: string; uid: number; gid: number };
  addresses: PartitionAddress[];
  tap: string | null;
}

/** `.slapos-resource`, in SlapOS's shape (slapconfiguration reads it), sorted keys. */
export interface SlaposResource {
  address_list: { addr: string; netmask: string }[];
  external_storage_list: string[];
  ipv6_range: Record<string, never>;
  path: string;
  reference: string;
  tap: { name: string } | null;
  tun: null;
  user: { additional_group_list: string[]; name: string; path: string; shell: string };
}

export const RESOURCE_FILE = ".slapos-resource";
/** Far more than any partition's `.slapos-resource`. */
export const MAX_RESOURCE_BYTES = 64 * 1024;
/** Who writes `.slapos-resource`: format, as root (or as the agent's own user when it cannot switch). */
const RESOURCE_OWNER = process.getuid?.() ?? 0;

/**
 * Format's own record of each partition, `<instance_root>/var/format/<reference>.slapos-resource`:
 * the same text as the partition's `.slapos-resource` (which recipes read), in a directory only
 * root writes. The partition's user owns its directory and may delete or replace its copy (to
 * claim another partition's addresses): the agent and format believe the record, never the copy.
 */
export function resourceRecordDirectory(config: NodeConfig): string {
  return join(config.instanceRoot, "var", "format");
}

export type ResourceFile = { text: string; mode: number };

/** The partition's own `.slapos-resource`, if format wrote it (a regular file of root's, bounded). */
export function readResourceCopy(partitionPath: string): Promise<ResourceFile | null> {
  return ConfinedDirectory.with(partitionPath, (directory) =>
    directory.readWithMode(RESOURCE_FILE, { maxBytes: MAX_RESOURCE_BYTES, owners: [RESOURCE_OWNER] }),
  );
}

/**
 * Format's record of a partition; on a node formatted before records existed, the partition's
 * copy, if still format's (the next format writes the record).
 */
export async function readResource(config: NodeConfig, reference: string): Promise<ResourceFile | null> {
  const record = await ConfinedDirectory.with(resourceRecordDirectory(config), (directory) =>
    directory.readWithMode(`${reference}.slapos-resource`, {
      maxBytes: MAX_RESOURCE_BYTES,
      owners: [RESOURCE_OWNER],
    }),
  ).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return null;
    throw error;
  });
  return record ?? readResourceCopy(join(config.instanceRoot, reference));
}

export function partitionReference(config: NodeConfig, index: number): string {
  return `${config.format.partitionBaseName}${index}`;
}

/**
 * The partitions `format` made, read from their `.slapos-resource` files, in index order. A
 * partition whose file is not format's (its user replaced it) is left out, logged, until format
 * writes it again: one tenant cannot stop the node's other partitions.
 */
export async function readLocalPartitions(config: NodeConfig, logger?: Logger): Promise<LocalPartition[]> {
  let entries: string[];
  try {
    entries = await readdir(config.instanceRoot);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const base = config.format.partitionBaseName;
  const partitions: LocalPartition[] = [];
  for (const entry of entries) {
    const index = Number(entry.slice(base.length));
    if (!entry.startsWith(base) || !Number.isInteger(index) || `${base}${index}` !== entry) continue;
    const path = join(config.instanceRoot, entry);
    let text: string | undefined;
    try {
      text = (await readResource(config, entry))?.text;
    } catch (error) {
      if (!(error instanceof RefusedFileError)) throw error;
      logger?.error({ partition: entry, reason: error.message }, "partition skipped: run 'slap node format'");
      continue;
    }
    if (text === undefined) continue;
    let resource: SlaposResource;
    try {
      resource = JSON.parse(text) as SlaposResource;
    } catch {
      throw new Error(`${join(path, RESOURCE_FILE)} is not valid JSON: run 'slap node format'`);
    }
    if (resource.reference !== entry) {
      throw new Error(
        `${join(path, RESOURCE_FILE)} describes ${resource.reference}, not ${entry}: run 'slap node format'`,
      );
    }
    const owner = await stat(path);
    partitions.push({
      reference: entry,
      index,
      path,
      user: { name: resource.user.name, uid: owner.uid, gid: owner.gid },
      addresses: resource.address_list.map(({ addr, netmask }) => ({ address: addr, netmask })),
      tap: resource.tap?.name ?? null,
    });
  }
  return partitions.sort((a, b) => a.index - b.index);
}
