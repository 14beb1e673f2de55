import type { Logger } from "pino";
import type { LocalPartition } from "../partitions.js";
import { counterName, type Direction } from "./accounting-rules.js";
import { diskUsage } from "./disk.js";
import { listAccountingTable } from "./nftables.js";
import { sampleProcesses } from "./processes.js";
import type { PartitionSample } from "./usage-record.js";

/**
 * The uids whose processes belong to exactly one partition. Root runs the system itself, and a uid
 * shared by several partitions (alter_user = false) cannot tell their processes apart: billing
 * either would be wrong, so their CPU and memory read 0.
 */
function attributableUids(partitions: LocalPartition[], logger: Logger): Set<number> {
  const referencesByUid = new Map<number, string[]>();
  for (const { user, reference } of partitions) {
    referencesByUid.set(user.uid, [...(referencesByUid.get(user.uid) ?? []), reference]);
  }
  const attributable = new Set<number>();
  for (const [uid, references] of referencesByUid) {
    if (uid !== 0 && references.length === 1) attributable.add(uid);
    else {
      logger.warn(
        { uid, partitions: references },
        "CPU and memory of these partitions are reported as 0: their processes run as root or as a user shared with another partition (format them with alter_user = true)",
      );
    }
  }
  return attributable;
}

/** Measures every partition at once: one /proc scan, one du and one nft call for all of them. */
export async function samplePartitions(
  partitions: LocalPartition[],
  options: { alterNetwork: boolean; logger: Logger },
): Promise<Map<string, PartitionSample>> {
  const { logger } = options;
  const pending = Promise.all([
    diskUsage(
      partitions.map((partition) => partition.path),
      logger,
    ),
    options.alterNetwork ? listAccountingTable() : null,
  ]);
  // Scanned while du and nft run in their own processes.
  const processesByUid = sampleProcesses(attributableUids(partitions, logger));
  const [diskBytes, table] = await pending;
  if (options.alterNetwork && table === null) {
    logger.warn(
      "the nftables table inet slapos_accounting is missing: no traffic is counted until the agent sets it up again",
    );
  }
  const uncounted: string[] = [];
  const countersOf = (partition: LocalPartition, direction: Direction): Record<string, number> => {
    const counters: Record<string, number> = {};
    if (table === null) return counters;
    for (const { address } of partition.addresses) {
      const name = counterName(direction, address);
      const bytes = table.counterBytes.get(name);
      if (bytes === undefined) uncounted.push(`${partition.reference} ${name}`);
      else counters[name] = bytes;
    }
    return counters;
  };
  const samples = new Map<string, PartitionSample>();
  for (const partition of partitions) {
    const processes = processesByUid.get(partition.user.uid) ?? [];
    const disk = diskBytes.get(partition.path);
    if (disk === undefined) {
      logger.warn({ path: partition.path }, "disk usage of this partition is unknown: reported as 0");
    }
    samples.set(partition.reference, {
      processTicks: Object.fromEntries(processes.map(({ id, cpuTicks }) => [id, cpuTicks])),
      memoryBytes: processes.reduce((total, { rssBytes }) => total + rssBytes, 0),
      diskBytes: disk ?? 0,
      rxBytes: countersOf(partition, "rx"),
      txBytes: countersOf(partition, "tx"),
    });
  }
  if (uncounted.length > 0) {
    logger.warn(
      { counters: uncounted },
      "these partition addresses have no nftables counter yet: their traffic is not counted",
    );
  }
  return samples;
}
