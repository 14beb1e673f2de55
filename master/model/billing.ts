import { and, eq, gt, inArray, isNull, lt, or, sql } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { contracts, usageRecords } from "../db/schema.js";
import type { Actor } from "./actor.js";
import { forbidden, invalid } from "./errors.js";

export interface BillLine {
  contractId: number;
  instanceId: string;
  computerId: string;
  partitionReference: string;
  pricePerHour: number;
  /** Hours of the contract inside the billed period. */
  hours: number;
  amount: number;
  usage: {
    cpuSeconds: number;
    networkRxBytes: number;
    networkTxBytes: number;
    maxMemoryBytes: number;
    maxDiskBytes: number;
  };
}

export interface Bill {
  personId: string;
  from: string;
  to: string;
  lines: BillLine[];
  total: number;
}

const HOUR_MS = 3_600_000;

/**
 * What a person owes for a period: for each trading contract, the partition-hours inside the
 * period times the price agreed at allocation, with the usage its nodes reported.
 */
export async function computeBill(
  db: Db,
  actor: Actor,
  personId: string,
  from: Date,
  to: Date,
): Promise<Bill> {
  if (actor.kind !== "person" || (actor.id !== personId && !actor.isAdmin)) {
    throw forbidden(`${actor.kind} ${actor.id} may not read the bill of person ${personId}`);
  }
  if (!(from < to)) throw invalid("to", "the billed period must end after it starts");
  const rows = await db
    .select()
    .from(contracts)
    .where(
      and(
        eq(contracts.requesterId, personId),
        lt(contracts.startedAt, to),
        or(isNull(contracts.endedAt), gt(contracts.endedAt, from)),
      ),
    )
    .orderBy(contracts.id);
  const instanceIds = [...new Set(rows.map((row) => row.instanceId))];
  const usage =
    instanceIds.length === 0
      ? []
      : await db
          .select({
            instanceId: usageRecords.instanceId,
            cpuSeconds: sql<number>`coalesce(sum(${usageRecords.cpuSeconds}), 0)::float8`,
            networkRxBytes: sql<number>`coalesce(sum(${usageRecords.networkRxBytes}), 0)::float8`,
            networkTxBytes: sql<number>`coalesce(sum(${usageRecords.networkTxBytes}), 0)::float8`,
            maxMemoryBytes: sql<number>`coalesce(max(${usageRecords.memoryBytes}), 0)::float8`,
            maxDiskBytes: sql<number>`coalesce(max(${usageRecords.diskBytes}), 0)::float8`,
          })
          .from(usageRecords)
          .where(
            and(
              inArray(usageRecords.instanceId, instanceIds),
              gt(usageRecords.periodEnd, from),
              lt(usageRecords.periodStart, to),
            ),
          )
          .groupBy(usageRecords.instanceId);
  const usageOf = new Map(usage.map((entry) => [entry.instanceId, entry]));
  const lines = rows.map((row) => {
    const start = Math.max(row.startedAt.getTime(), from.getTime());
    const end = Math.min(row.endedAt?.getTime() ?? to.getTime(), to.getTime());
    const hours = Math.max(0, end - start) / HOUR_MS;
    const used = usageOf.get(row.instanceId);
    return {
      contractId: row.id,
      instanceId: row.instanceId,
      computerId: row.computerId,
      partitionReference: row.partitionReference,
      pricePerHour: row.pricePerHour,
      hours,
      amount: hours * row.pricePerHour,
      usage: {
        cpuSeconds: Number(used?.cpuSeconds ?? 0),
        networkRxBytes: Number(used?.networkRxBytes ?? 0),
        networkTxBytes: Number(used?.networkTxBytes ?? 0),
        maxMemoryBytes: Number(used?.maxMemoryBytes ?? 0),
        maxDiskBytes: Number(used?.maxDiskBytes ?? 0),
      },
    };
  });
  return {
    personId,
    from: from.toISOString(),
    to: to.toISOString(),
    lines,
    total: lines.reduce((sum, line) => sum + line.amount, 0),
  };
}
