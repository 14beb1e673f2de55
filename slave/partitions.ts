import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { NodeConfig } from "./config.js";

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

export function partitionReference(config: NodeConfig, index: number): string {
  return `${config.format.partitionBaseName}${index}`;
}

/** The partitions `format` made, read from their `.slapos-resource` files, in index order. */
export async function readLocalPartitions(config: NodeConfig): Promise<LocalPartition[]> {
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
    let resource: SlaposResource;
    try {
      resource = JSON.parse(await readFile(join(path, RESOURCE_FILE), "utf8")) as SlaposResource;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw new Error(
        `${join(path, RESOURCE_FILE)} is not valid: ${(error as Error).message}; run 'slap node format'`,
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
