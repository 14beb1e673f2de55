import { setTimeout as sleep } from "node:timers/promises";
import type { DesiredState } from "../protocol/client.js";
import type { AgentContext } from "./context.js";
import { DesiredStateCache } from "./desired-state-cache.js";
import { fullPass, offlineStart, SoftwareReporter, watchdog } from "./pass.js";
import { sendUsage, usageMeter } from "./usage.js";

export interface LoopOptions {
  signal: AbortSignal;
  /** Seconds the master may hold a long poll. */
  pollSeconds?: number;
  /** Seconds between two watchdog checks of the node's processes. */
  watchdogSeconds?: number;
}

const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 30_000;

/**
 * `slap node run`: waits on the master's long poll and acts as soon as the desired state changes;
 * a full pass every `full_pass_interval` as a safety net, sooner after a failure; the watchdog and
 * usage reports on their own timers. Survives the master going away: retries with back-off and,
 * when it starts without the master, starts what the cached desired state says should run.
 */
export async function runLoop(context: AgentContext, options: LoopOptions): Promise<void> {
  const { config, client, logger } = context;
  const { signal } = options;
  const cache = new DesiredStateCache(config.desiredStateCache);
  const reporter = new SoftwareReporter(context);
  const meter = usageMeter(context);
  let state: DesiredState | null = await cache.load();
  let deployedVersion = -1;
  let nextFullPass = 0;
  let retryDelay = RETRY_MIN_MS;
  let offlineStarted = false;

  const timers = [
    setInterval(
      () => {
        if (state)
          watchdog(context, state).catch((error) => logger.warn({ err: error }, "watchdog check failed"));
      },
      (options.watchdogSeconds ?? 5) * 1000,
    ),
    setInterval(() => {
      sendUsage(context, meter).catch((error) => logger.warn({ err: error }, "usage report failed"));
    }, config.reportIntervalSeconds * 1000),
  ];

  try {
    while (!signal.aborted) {
      let received: DesiredState;
      try {
        const waitSeconds = Math.max(
          0,
          Math.min(options.pollSeconds ?? 25, Math.ceil((nextFullPass - Date.now()) / 1000)),
        );
        received = await client.desiredState(config.computerId, {
          after: Math.max(0, deployedVersion),
          waitSeconds,
          signal,
        });
        retryDelay = RETRY_MIN_MS;
      } catch (error) {
        if (signal.aborted) break;
        logger.warn({ err: error, retryInSeconds: retryDelay / 1000 }, "cannot reach the master");
        if (state && !offlineStarted) {
          offlineStarted = true;
          await offlineStart(context, state).catch((startError) =>
            logger.error({ err: startError }, "could not start the cached instances"),
          );
        }
        await sleep(retryDelay, undefined, { signal }).catch(() => {});
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
        continue;
      }
      if (received.version === deployedVersion && Date.now() < nextFullPass) continue;
      state = received;
      await cache.save(received);
      const result = await fullPass(context, received, reporter).catch((error) => {
        logger.error({ err: error }, "pass failed");
        return { failed: true };
      });
      deployedVersion = received.version;
      // After a failure, try again soon (10 s) rather than at the next safety-net pass.
      nextFullPass = Date.now() + (result.failed ? 10 : config.fullPassIntervalSeconds) * 1000;
    }
  } finally {
    for (const timer of timers) clearInterval(timer);
  }
}
