import type { UsageRecord } from "../../protocol/client.js";
import type { Baseline } from "./usage-state.js";

/** What one partition's counters and levels read now. */
export interface PartitionSample {
  processTicks: Record<string, number>;
  memoryBytes: number;
  diskBytes: number;
  rxBytes: Record<string, number>;
  txBytes: Record<string, number>;
}

/**
 * How much the counters grew since the baseline. A counter absent from the baseline (a new
 * process, a new address) counts from zero; so does one that went down, which was reset (nft
 * rules recreated): its new value is what it counted since, never a negative amount.
 */
function growth(now: Record<string, number>, before: Record<string, number>): number {
  let total = 0;
  for (const [key, value] of Object.entries(now)) {
    const previous = before[key] ?? 0;
    total += value >= previous ? value - previous : value;
  }
  return total;
}

export function usageRecord(
  partitionReference: string,
  baseline: Baseline,
  sample: PartitionSample,
  now: Date,
  ticksPerSecond: number,
): UsageRecord {
  return {
    partitionReference,
    periodStart: baseline.at,
    periodEnd: now.toISOString(),
    cpuSeconds: growth(sample.processTicks, baseline.processTicks) / ticksPerSecond,
    memoryBytes: sample.memoryBytes,
    diskBytes: sample.diskBytes,
    networkRxBytes: growth(sample.rxBytes, baseline.rxBytes),
    networkTxBytes: growth(sample.txBytes, baseline.txBytes),
  };
}

export function baselineOf(sample: PartitionSample, now: Date): Baseline {
  return {
    at: now.toISOString(),
    processTicks: sample.processTicks,
    rxBytes: sample.rxBytes,
    txBytes: sample.txBytes,
  };
}
