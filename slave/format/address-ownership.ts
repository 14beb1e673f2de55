import { applyNftBatch, deleteNftTable, listNftTable, type NftTable } from "../nft.js";
import type { ChangeLog } from "./changes.js";
import { formatIpv4, parseIpv4 } from "./ipv4.js";
import { formatIpv6, parseIpv6 } from "./ipv6.js";

/** The agent's table that says who may send from each partition address. */
export const OWNERSHIP_TABLE = "slapos_partitions";

/** What the table needs of a partition; a LocalPartition is one. */
export interface OwnedPartition {
  reference: string;
  user: { uid: number };
  addresses: readonly { address: string }[];
}

export interface OwnershipOptions {
  /** The network namespace whose table to manage (tests use a throwaway one); the agent's own when absent. */
  netns?: string;
}

const ROOT_UID = 0;
/**
 * After conntrack (-200), which the reply rule reads, and before the accounting counters
 * (mangle, -150), so that a dropped packet is never counted as its address's traffic.
 */
const PRIORITY = "mangle - 10";

/** A value as nft prints it, and the number nft sorts it by. */
interface Printed {
  text: string;
  value: bigint;
}

interface Family {
  protocol: "ip" | "ip6";
  /** The map from each partition address to its partition's chain. */
  map: string;
  type: string;
  holds: (address: string) => boolean;
  print: (address: string) => Printed;
}

const FAMILIES: Family[] = [
  {
    protocol: "ip",
    map: "partition_v4",
    type: "ipv4_addr",
    holds: (address) => !address.includes(":"),
    print: (address) => {
      const value = parseIpv4(address);
      return { text: formatIpv4(value), value: BigInt(value) };
    },
  },
  {
    protocol: "ip6",
    map: "partition_v6",
    type: "ipv6_addr",
    holds: (address) => address.includes(":"),
    print: (address) => {
      const value = parseIpv6(address);
      return { text: formatIpv6(value), value };
    },
  },
];

const inNftOrder = <T extends Printed>(values: T[]): T[] =>
  [...values].sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));

/** One value, or an anonymous set of them: how nft prints either. */
function valueOrSet(values: Printed[]): string {
  const texts = [...new Set(inNftOrder(values).map((value) => value.text))];
  return texts.length === 1 ? (texts[0] as string) : `{ ${texts.join(", ")} }`;
}

/** nft takes a chain name unquoted, so only a plain word can be one. */
function chainName(reference: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(reference)) {
    throw new Error(
      `partition reference '${reference}' cannot name an nftables chain: set [slapformat] partition_base_name to letters, digits and '_' only, or alter_network = false`,
    );
  }
  return reference;
}

function table(netns: string | undefined): NftTable {
  return {
    name: OWNERSHIP_TABLE,
    purpose: "partition address ownership (any partition may then send from another's addresses)",
    netns,
  };
}

/**
 * The table for these partitions, exactly as `nft list table` prints it but for where nft wraps
 * long lines: the batch makes the table from this text, and a re-run compares nft's listing with it.
 */
export function renderOwnershipTable(partitions: readonly OwnedPartition[]): string {
  const owned = partitions.map((partition) => ({
    chain: chainName(partition.reference),
    uids: [ROOT_UID, partition.user.uid].map((uid) => ({ text: String(uid), value: BigInt(uid) })),
    addresses: FAMILIES.map((family) =>
      partition.addresses
        .filter(({ address }) => family.holds(address))
        .map(({ address }) => family.print(address)),
    ),
  }));
  const maps = FAMILIES.map((family, index) => {
    const elements = inNftOrder(
      owned.flatMap(({ chain, addresses }) =>
        (addresses[index] ?? []).map((address) => ({ ...address, chain })),
      ),
    ).map(({ text, chain }) => `${text} : jump ${chain}`);
    return [
      `\tmap ${family.map} {`,
      `\t\ttype ${family.type} : verdict`,
      ...(elements.length > 0 ? [`\t\telements = { ${elements.join(", ")} }`] : []),
      "\t}",
    ];
  });
  const output = [
    "\tchain output {",
    `\t\ttype filter hook output priority ${PRIORITY}; policy accept;`,
    ...FAMILIES.map((family) => `\t\t${family.protocol} saddr vmap @${family.map}`),
    "\t}",
  ];
  const chains = owned.map(({ chain, uids, addresses }) => {
    const stranger = `meta skuid != ${valueOrSet(uids)}`;
    return [
      `\tchain ${chain} {`,
      ...FAMILIES.flatMap((family, index) => {
        const own = addresses[index] ?? [];
        return own.length === 0
          ? []
          : [`\t\t${family.protocol} daddr != ${valueOrSet(own)} ${stranger} drop`];
      }),
      `\t\tct direction reply ${stranger} drop`,
      "\t}",
    ];
  });
  const blocks = [...maps, output, ...chains].map((lines) => lines.join("\n"));
  return `table inet ${OWNERSHIP_TABLE} {\n${blocks.join("\n\n")}\n}`;
}

const unwrapped = (text: string) => text.replace(/\s+/g, " ").trim();

/**
 * Only a partition's own user and root may send from its addresses. A process of partition M
 * may still bind partition N's address (the kernel lets any user bind any local address), but
 * nothing it sends from there leaves: it can neither pass for N nor serve on N's address.
 *
 * The table's output chain sends each packet from a partition address to that partition's chain,
 * which judges it by `meta skuid`, the user that opened the sending socket, and drops it when that
 * user is neither the partition's nor root and the packet either goes anywhere but the
 * partition's own addresses, or goes to them as a reply (conntrack). A process connecting to a
 * partition's address on this host gets that very address as its source (the kernel's choice for
 * a local destination): that must pass, or no partition could use another's service here, while a
 * squatter's answers to the partition's own clients must not.
 *
 * The table is replaced whole, in one transaction, unless nft already lists exactly what it
 * should hold: a re-run changes and records nothing.
 */
export async function ensureAddressOwnership(
  partitions: readonly OwnedPartition[],
  changes: ChangeLog,
  { netns }: OwnershipOptions = {},
): Promise<void> {
  const wanted = renderOwnershipTable(partitions);
  const current = await listNftTable(table(netns));
  if (current !== null && unwrapped(current) === unwrapped(wanted)) return;
  // "add" first, so that "delete" never fails on a missing table.
  await applyNftBatch(
    table(netns),
    [`add table inet ${OWNERSHIP_TABLE}`, `delete table inet ${OWNERSHIP_TABLE}`, wanted].join("\n"),
  );
  const count = `${partitions.length} partitions`;
  changes.record(
    undefined,
    current === null
      ? `created nftables table inet ${OWNERSHIP_TABLE}: only a partition's user and root may send from its addresses (${count})`
      : `replaced nftables table inet ${OWNERSHIP_TABLE}, which did not match the partitions' addresses and users (${count})`,
  );
}

/** Deletes the table (slave-bootstrap/uninstall.ts does the same in shell); nothing to do when it does not exist. */
export function removeAddressOwnership({ netns }: OwnershipOptions = {}): Promise<void> {
  return deleteNftTable(table(netns));
}
