import { applyNftBatch as applyBatch, deleteNftTable, listNftTable, type NftTable } from "../nft.js";
import { ACCOUNTING_TABLE, ruleSignature } from "./accounting-rules.js";

/** Our table as `nft -j list table` shows it. */
export interface AccountingTable {
  /** Bytes counted so far by each named counter. */
  counterBytes: Map<string, number>;
  chains: { name: string; type?: string; hook?: string; priority?: number; policy?: string }[];
  /** signature: null for a rule of a shape we never write. */
  rules: { chain: string; handle: number; signature: string | null }[];
  /** Sets, maps, quotas...: objects we never create. */
  foreignObjects: number;
}

const ACCOUNTING: NftTable = { name: ACCOUNTING_TABLE, purpose: "network accounting" };

/** Our table, with every counter, chain and rule, in one nft call; null when it does not exist. */
export async function listAccountingTable(): Promise<AccountingTable | null> {
  const json = await listNftTable(ACCOUNTING, { json: true });
  return json === null ? null : parseTable(json);
}

/** Applies a batch of nft commands to the accounting table atomically, in one process. */
export function applyNftBatch(batch: string): Promise<void> {
  return applyBatch(ACCOUNTING, batch);
}

export function deleteAccountingTable(): Promise<void> {
  return deleteNftTable(ACCOUNTING);
}

type NftObject = Record<string, Record<string, unknown> | undefined>;

function parseTable(json: string): AccountingTable {
  const table: AccountingTable = { counterBytes: new Map(), chains: [], rules: [], foreignObjects: 0 };
  for (const object of (JSON.parse(json) as { nftables: NftObject[] }).nftables) {
    const [kind, body = {}] = Object.entries(object)[0] ?? [];
    if (kind === "metainfo" || kind === "table") continue;
    if (kind === "counter") {
      table.counterBytes.set(String(body.name), Number(body.bytes));
    } else if (kind === "chain") {
      table.chains.push({
        name: String(body.name),
        type: body.type as string | undefined,
        hook: body.hook as string | undefined,
        priority: body.prio as number | undefined,
        policy: body.policy as string | undefined,
      });
    } else if (kind === "rule") {
      const chain = String(body.chain);
      table.rules.push({ chain, handle: Number(body.handle), signature: signatureOf(chain, body.expr) });
    } else {
      table.foreignObjects++;
    }
  }
  return table;
}

/** The signature of `ip[6] saddr|daddr ADDRESS counter name NAME`, the only rule we write. */
function signatureOf(chain: string, expr: unknown): string | null {
  if (!Array.isArray(expr) || expr.length !== 2) return null;
  const [match, counter] = expr as [
    { match?: { op?: string; left?: { payload?: { protocol?: string; field?: string } }; right?: unknown } },
    { counter?: unknown },
  ];
  const payload = match.match?.left?.payload;
  if (
    match.match?.op !== "==" ||
    (payload?.protocol !== "ip" && payload?.protocol !== "ip6") ||
    (payload.field !== "saddr" && payload.field !== "daddr") ||
    typeof match.match.right !== "string" ||
    typeof counter.counter !== "string"
  ) {
    return null;
  }
  return ruleSignature({
    chain,
    protocol: payload.protocol,
    field: payload.field,
    address: match.match.right,
    counter: counter.counter,
  });
}
