import { rm } from "node:fs/promises";
import type { Logger } from "pino";
import type { UsageRecord } from "../../protocol/client.js";
import type { PartitionCgroups } from "../isolation/cgroups.js";
import type { LocalPartition } from "../partitions.js";
import { accountingChanges } from "./accounting-rules.js";
import { applyNftBatch, deleteAccountingTable, listAccountingTable } from "./nftables.js";
import { clockTicksPerSecond } from "./processes.js";
import { samplePartitions } from "./sample.js";
import { baselineOf, usageRecord } from "./usage-record.js";
import { emptyUsageState, readUsageState, writeUsageState } from "./usage-state.js";

export interface UsageMeterOptions {
  /** JSON file holding each partition's baseline, so that a restarted agent does not count twice. */
  stateFile: string;
  /** false: the node's network is not ours to change; no nftables table, network bytes are 0. */
  alterNetwork: boolean;
  /** When given, each collection logs every partition's limits and what its cgroup holds now. */
  cgroups?: PartitionCgroups;
  logger: Logger;
}

/**
 * Per-partition resource usage, as usage records for the master.
 *
 * - CPU: utime + stime of the processes whose real uid is the partition's, each process against
 *   its own baseline (by pid and start time). A process that exits between two collections loses
 *   the CPU it used since the last one: /proc forgets it, and a parent's cutime would count its
 *   earlier life twice. Never negative.
 * - Memory: RSS of those processes now. Disk: bytes allocated under the partition directory now.
 * - Network: bytes to and from each partition address, counted by nftables (input, output and
 *   forward hooks) in our own table `inet slapos_accounting`. A counter that went down was
 *   recreated: its new value is the period's amount. With alterNetwork false, always 0.
 * - Processes of root, or of a uid shared by several partitions, are not attributed (0).
 *
 * Baselines are saved when records are returned: records the caller fails to deliver are lost,
 * never counted twice.
 */
export class UsageMeter {
  /** One operation at a time: two collections racing on the state file would count twice. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: UsageMeterOptions) {}

  /** Ensures one nftables counter per partition address and direction, with its rules (alterNetwork only; idempotent; one nft call when in place). */
  ensureAccounting(partitions: LocalPartition[]): Promise<void> {
    return this.exclusively(async () => {
      if (!this.options.alterNetwork) return;
      const addresses = partitions.flatMap((partition) => partition.addresses.map(({ address }) => address));
      const batch = accountingChanges(await listAccountingTable(), addresses);
      if (batch === null) return;
      await applyNftBatch(batch);
      this.options.logger.info({ addresses: addresses.length }, "network accounting rules updated");
    });
  }

  /**
   * Measures every partition now and returns one record per partition for the period since the
   * previous collection; a partition without a baseline (first collection, new partition) gets
   * one and no record.
   */
  collect(partitions: LocalPartition[], now = new Date()): Promise<UsageRecord[]> {
    return this.exclusively(async () => {
      const { stateFile, logger } = this.options;
      const [ticksPerSecond, previous, samples] = await Promise.all([
        clockTicksPerSecond(),
        readUsageState(stateFile, logger),
        samplePartitions(partitions, this.options),
      ]);
      const records: UsageRecord[] = [];
      const next = emptyUsageState();
      for (const [reference, sample] of samples) {
        const baseline = previous.baselines[reference];
        if (baseline !== undefined && new Date(baseline.at) < now) {
          records.push(usageRecord(reference, baseline, sample, now, ticksPerSecond));
        } else if (baseline !== undefined) {
          logger.warn(
            { partition: reference, baseline: baseline.at, now: now.toISOString() },
            "the clock is at or before the last collection: no record, this partition starts a new baseline",
          );
        }
        next.baselines[reference] = baselineOf(sample, now);
      }
      await writeUsageState(stateFile, next);
      await this.logConfinement(partitions);
      return records;
    });
  }

  /**
   * Logged, not sent: the master's usage records (protocol/api.ts UsageRecord, strict) have no
   * field for limits or a cgroup's own counts.
   */
  private async logConfinement(partitions: LocalPartition[]): Promise<void> {
    const { cgroups, logger } = this.options;
    if (cgroups === undefined) return;
    const usage = await Promise.all(
      partitions.map(async ({ reference }) => [reference, await cgroups.usage(reference)] as const),
    );
    logger.info(
      {
        cgroups: cgroups.version === null ? "none" : `v${cgroups.version}`,
        partitions: Object.fromEntries(usage),
      },
      "partition limits, with the memory and processes their cgroups hold now",
    );
  }

  /** Deletes the nftables table (alterNetwork only) and the state: what uninstalling the agent does. */
  removeAccounting(): Promise<void> {
    return this.exclusively(async () => {
      if (this.options.alterNetwork) await deleteAccountingTable();
      await rm(this.options.stateFile, { force: true });
    });
  }

  private exclusively<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation, operation);
    this.queue = result.catch(() => {});
    return result;
  }
}
