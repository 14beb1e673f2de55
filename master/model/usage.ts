import { and, eq, inArray } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { partitions, usageRecords } from "../db/schema.js";
import type { Actor } from "./actor.js";
import { touchComputer } from "./computers.js";
import { invalid } from "./errors.js";

export interface UsageReport {
  partitionReference: string;
  periodStart: string;
  periodEnd: string;
  cpuSeconds: number;
  memoryBytes: number;
  diskBytes: number;
  networkRxBytes: number;
  networkTxBytes: number;
}

/** Stores a node's usage records, each attributed to the instance its partition runs now. */
export async function recordUsage(
  db: Db,
  actor: Actor,
  computerId: string,
  reports: UsageReport[],
): Promise<number> {
  for (const [index, report] of reports.entries()) {
    if (!(new Date(report.periodStart) < new Date(report.periodEnd))) {
      throw invalid(`records[${index}].periodEnd`, "a usage period must end after it starts");
    }
  }
  return db.transaction(async (tx) => {
    await touchComputer(tx, actor, computerId);
    if (reports.length === 0) return 0;
    const references = [...new Set(reports.map((report) => report.partitionReference))];
    const known = await tx
      .select({ reference: partitions.reference, instanceId: partitions.instanceId })
      .from(partitions)
      .where(and(eq(partitions.computerId, computerId), inArray(partitions.reference, references)));
    const instanceOf = new Map(known.map((partition) => [partition.reference, partition.instanceId]));
    for (const [index, report] of reports.entries()) {
      if (!instanceOf.has(report.partitionReference)) {
        throw invalid(
          `records[${index}].partitionReference`,
          `computer ${computerId} has no partition ${report.partitionReference}`,
        );
      }
    }
    await tx.insert(usageRecords).values(
      reports.map((report) => ({
        computerId,
        partitionReference: report.partitionReference,
        instanceId: instanceOf.get(report.partitionReference) ?? null,
        periodStart: new Date(report.periodStart),
        periodEnd: new Date(report.periodEnd),
        cpuSeconds: report.cpuSeconds,
        memoryBytes: report.memoryBytes,
        diskBytes: report.diskBytes,
        networkRxBytes: report.networkRxBytes,
        networkTxBytes: report.networkTxBytes,
      })),
    );
    return reports.length;
  });
}
