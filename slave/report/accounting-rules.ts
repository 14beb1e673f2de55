import { isIPv4, isIPv6 } from "node:net";
import type { AccountingTable } from "./nftables.js";

export const ACCOUNTING_TABLE = "slapos_accounting";
const TABLE = `inet ${ACCOUNTING_TABLE}`;

/** Traffic received by a partition address (rx) or sent from it (tx). */
export type Direction = "rx" | "tx";

/**
 * Our base chains. Priority mangle (-150): after defragmentation, conntrack and DNAT, before the
 * filter tables, so that a packet is counted once it reached (or left) the partition's address
 * whatever a firewall does with it next. Forward covers partitions routed through a tap.
 */
const ACCOUNTING_CHAINS = {
  input: { hook: "input", priority: -150 },
  output: { hook: "output", priority: -150 },
  forward: { hook: "forward", priority: -150 },
} as const;
type ChainName = keyof typeof ACCOUNTING_CHAINS;

/** Which chains see each direction of a partition address's traffic, and which end of the packet it is. */
const COUNTED_IN: Record<Direction, { chains: ChainName[]; field: "saddr" | "daddr" }> = {
  tx: { chains: ["output", "forward"], field: "saddr" },
  rx: { chains: ["input", "forward"], field: "daddr" },
};

interface AccountingRule {
  chain: ChainName;
  protocol: "ip" | "ip6";
  field: "saddr" | "daddr";
  address: string;
  counter: string;
}

/** The spelling nft prints (RFC 5952 for IPv6), so that one address always names one counter. */
function canonicalAddress(address: string): string {
  if (isIPv4(address)) return address;
  if (isIPv6(address)) return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  throw new Error(
    `partition address '${address}' is neither IPv4 nor IPv6: fix the partition's .slapos-resource (run 'slap node format')`,
  );
}

/** nft object names allow letters, digits, '_' and '.', not ':'. */
export function counterName(direction: Direction, address: string): string {
  return `${direction}_${canonicalAddress(address).replaceAll(":", "_")}`;
}

function rulesFor(address: string): AccountingRule[] {
  const canonical = canonicalAddress(address);
  const protocol = isIPv4(canonical) ? "ip" : "ip6";
  return (["tx", "rx"] as const).flatMap((direction) => {
    const { chains, field } = COUNTED_IN[direction];
    return chains.map((chain) => ({
      chain,
      protocol,
      field,
      address: canonical,
      counter: counterName(direction, canonical),
    }));
  });
}

/** What identifies a rule, as parsed from `nft -j` output or built by rulesFor. */
export function ruleSignature(rule: Record<keyof AccountingRule, string>): string {
  return `${rule.chain} ${rule.protocol} ${rule.field} ${rule.address} ${rule.counter}`;
}

function addRule(rule: AccountingRule): string {
  return `add rule ${TABLE} ${rule.chain} ${rule.protocol} ${rule.field} ${rule.address} counter name "${rule.counter}"`;
}

function createTable(): string[] {
  return [
    `add table ${TABLE}`,
    ...Object.entries(ACCOUNTING_CHAINS).map(
      ([name, { hook, priority }]) =>
        `add chain ${TABLE} ${name} { type filter hook ${hook} priority ${priority}; policy accept; }`,
    ),
  ];
}

/** True when the table holds exactly our three chains, counters and rules: anything else means recreating it. */
function hasExpectedShape(table: AccountingTable): boolean {
  if (table.foreignObjects > 0 || table.chains.length !== Object.keys(ACCOUNTING_CHAINS).length) return false;
  return table.chains.every((chain) => {
    const expected = ACCOUNTING_CHAINS[chain.name as ChainName];
    return (
      expected !== undefined &&
      chain.type === "filter" &&
      chain.hook === expected.hook &&
      chain.priority === expected.priority &&
      chain.policy === "accept"
    );
  });
}

/**
 * The nft batch that turns `current` (null: no table) into one counter per address and direction
 * with its rules, or null when everything is already in place. Counters that stay keep their
 * values: only what changed is added or deleted.
 */
export function accountingChanges(current: AccountingTable | null, addresses: string[]): string | null {
  const rules = new Map(addresses.flatMap(rulesFor).map((rule) => [ruleSignature(rule), rule]));
  const counters = new Set([...rules.values()].map((rule) => rule.counter));
  if (current === null || !hasExpectedShape(current)) {
    return [
      ...(current === null ? [] : [`delete table ${TABLE}`]),
      ...createTable(),
      ...[...counters].map((name) => `add counter ${TABLE} ${name}`),
      ...[...rules.values()].map(addRule),
    ].join("\n");
  }
  const kept = new Set<string>();
  const deletions: string[] = [];
  for (const rule of current.rules) {
    // Unknown rules and duplicates (two agents adding at once) would count traffic twice.
    if (rule.signature !== null && rules.has(rule.signature) && !kept.has(rule.signature)) {
      kept.add(rule.signature);
    } else {
      deletions.push(`delete rule ${TABLE} ${rule.chain} handle ${rule.handle}`);
    }
  }
  const existingCounters = new Set(current.counterBytes.keys());
  const commands = [
    ...deletions,
    ...[...existingCounters]
      .filter((name) => !counters.has(name))
      .map((name) => `delete counter ${TABLE} ${name}`),
    ...[...counters]
      .filter((name) => !existingCounters.has(name))
      .map((name) => `add counter ${TABLE} ${name}`),
    ...[...rules].filter(([signature]) => !kept.has(signature)).map(([, rule]) => addRule(rule)),
  ];
  return commands.length === 0 ? null : commands.join("\n");
}
