import { join } from "node:path";
import type { DesiredState } from "../protocol/client.js";
import type { AgentContext } from "./context.js";
import { applyPartitionExtras } from "./extras.js";
import { processPartition, startProcesses } from "./instance/deploy.js";
import { LATEST_BANG_FILE, readMark, TIMESTAMP_FILE, writeMark } from "./instance/partition-files.js";
import type { LocalPartition } from "./partitions.js";
import { readLocalPartitions } from "./partitions.js";
import { processSoftware, type SoftwareReport } from "./software.js";

export interface PassResult {
  software: Record<string, number>;
  partitions: Record<string, number>;
  /** Something failed: the loop tries again sooner than the next full pass. */
  failed: boolean;
}

/** Partitions deployed at once: buildouts mostly wait on processes, but each is one CPU at peak. */
const PARTITION_CONCURRENCY = 4;

function count(outcomes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) counts[outcome] = (counts[outcome] ?? 0) + 1;
  return counts;
}

async function inBatches<T, R>(items: T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, items.length) }, worker));
  return results;
}

/** A release whose build failed is tried again after this long, not on every pass. */
const SOFTWARE_RETRY_MS = 60_000;

/**
 * What the software step remembers between passes: states already reported (an unchanged node
 * sends nothing) and recent build failures (a broken release does not hold up every pass).
 */
export class SoftwareReporter {
  private readonly reported = new Map<string, string>();
  private readonly failedAt = new Map<string, number>();
  constructor(private readonly context: AgentContext) {}

  shouldTry(url: string): boolean {
    return Date.now() - (this.failedAt.get(url) ?? 0) >= SOFTWARE_RETRY_MS;
  }
  recordOutcome(url: string, outcome: string): void {
    if (outcome === "failed") this.failedAt.set(url, Date.now());
    else this.failedAt.delete(url);
  }

  async report(report: SoftwareReport): Promise<void> {
    const key = `${report.state}\n${"errorLog" in report ? report.errorLog : ""}`;
    if (this.reported.get(report.url) === key) return;
    await this.context.client.reportSoftware(this.context.config.computerId, report);
    this.reported.set(report.url, key);
  }
}

/** Installs and removes software releases as the master asks, one after the other. */
export async function softwarePass(
  context: AgentContext,
  state: DesiredState,
  reporter: SoftwareReporter,
): Promise<Record<string, number>> {
  const outcomes: string[] = [];
  for (const entry of state.software) {
    // Removing a release that failed to build need not wait for its next try.
    if (entry.requestedState === "available" && !reporter.shouldTry(entry.url)) {
      outcomes.push("failed");
      continue;
    }
    const outcome = await processSoftware(
      context.config,
      context.softwareUser,
      entry,
      (report) => reporter.report(report),
      context.logger,
    );
    reporter.recordOutcome(entry.url, outcome);
    if (outcome === "unchanged" && entry.requestedState === "available") {
      await reporter.report({ url: entry.url, state: "available" });
    }
    outcomes.push(outcome);
  }
  return count(outcomes);
}

function partitionsByReference(local: LocalPartition[]): Map<string, LocalPartition> {
  return new Map(local.map((partition) => [partition.reference, partition]));
}

/**
 * Deploys, stops and destroys instances as the master asks, and makes sure every started
 * partition's processes run (after a reboot, or when a service exited since the last pass). The
 * partitions' extras come first: an instance may use its routable address or block device at once.
 */
export async function instancePass(
  context: AgentContext,
  state: DesiredState,
): Promise<Record<string, number>> {
  await context.supervisor.ensureRunning();
  const local = partitionsByReference(await readLocalPartitions(context.config, context.logger));
  const extrasProblems = await applyPartitionExtras(context, state.partitions, local);
  const outcomes = await inBatches(state.partitions, PARTITION_CONCURRENCY, async (desired) => {
    const partition = local.get(desired.reference);
    if (!partition) {
      if (desired.instance) {
        context.logger.error(
          { partition: desired.reference },
          "the master placed an instance in a partition this node does not have: run 'slap node format'",
        );
      }
      return "missing" as const;
    }
    const outcome = await processPartition(
      context,
      partition,
      desired,
      extrasProblems.get(desired.reference),
    );
    if (outcome === "unchanged" && desired.instance?.requestedState === "started") {
      await startProcesses(context, partition);
    }
    return outcome as string;
  });
  return count(outcomes);
}

/** One full pass: software first (instances need it), then partitions. */
export async function fullPass(
  context: AgentContext,
  state: DesiredState,
  reporter: SoftwareReporter,
): Promise<PassResult> {
  const started = Date.now();
  const software = await softwarePass(context, state, reporter);
  const partitions = await instancePass(context, state);
  const failed = (software.failed ?? 0) + (partitions.failed ?? 0) > 0;
  context.logger.info(
    { version: state.version, software, partitions, seconds: (Date.now() - started) / 1000 },
    "pass done",
  );
  return { software, partitions, failed };
}

/**
 * Offline: the master is unreachable, so only what the last known state says should run is
 * started again, from the partitions' existing buildouts; nothing is reported.
 */
export async function offlineStart(context: AgentContext, state: DesiredState): Promise<number> {
  await context.supervisor.ensureRunning();
  const local = partitionsByReference(await readLocalPartitions(context.config, context.logger));
  // After a reboot the routable addresses are gone: the instances about to start need them.
  await applyPartitionExtras(context, state.partitions, local).catch((error) =>
    context.logger.error({ err: error }, "could not apply the partitions' extras"),
  );
  let started = 0;
  for (const desired of state.partitions) {
    const partition = local.get(desired.reference);
    if (!partition || desired.instance?.requestedState !== "started") continue;
    if ((await readMark(partition, TIMESTAMP_FILE)) === null) continue;
    await startProcesses(context, partition);
    started += 1;
  }
  context.logger.info(
    { partitions: started },
    "master unreachable: started the instances of the cached desired state",
  );
  return started;
}

/**
 * The watchdog: a watched service (etc/service) that exited makes the agent bang its instance,
 * at most once per deployment as SlapOS does, so the master redeploys the tree.
 */
export async function watchdog(context: AgentContext, state: DesiredState): Promise<string[]> {
  const stopped = (await context.supervisor.processes()).filter(
    (process) => process.watched && ["EXITED", "FATAL", "BACKOFF"].includes(process.state),
  );
  const banged: string[] = [];
  for (const process of stopped) {
    const reference = process.group;
    const instance = state.partitions.find((desired) => desired.reference === reference)?.instance;
    if (instance?.requestedState !== "started" || banged.includes(reference)) continue;
    const partition = { path: join(context.config.instanceRoot, reference) };
    const deployed = await readMark(partition, TIMESTAMP_FILE);
    const latestBang = await readMark(partition, LATEST_BANG_FILE);
    if (deployed === null || deployed === latestBang) continue;
    context.logger.warn(
      { partition: reference, process: process.name, state: process.state },
      "a watched service stopped: banging its instance",
    );
    await context.client.bang(instance.id);
    await writeMark(partition, LATEST_BANG_FILE, deployed);
    banged.push(reference);
  }
  return banged;
}
