import { and, asc, eq, inArray, isNull } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import type { PartitionAddress, PartitionExtras } from "../db/schema.js";
import { partitions, softwareInstallations, softwareInstances } from "../db/schema.js";
import type { Actor } from "./actor.js";
import { touchComputer } from "./computers.js";
import type { RequestedState } from "./instances.js";

export interface SharedInstanceState {
  id: string;
  title: string;
  softwareType: string;
  parameters: Record<string, string>;
}

export interface PartitionInstanceState {
  id: string;
  title: string;
  softwareReleaseUrl: string;
  softwareType: string;
  parameters: Record<string, string>;
  requestedState: RequestedState;
  /** Changes exactly when the node must redeploy. */
  timestamp: number;
  connectionParameters: Record<string, string>;
  sharedInstances: SharedInstanceState[];
}

export interface DesiredState {
  computerId: string;
  /** Increases with every change; a node long-polls for a version above the one it has. */
  version: number;
  software: { url: string; requestedState: "available" | "destroyed" }[];
  partitions: {
    reference: string;
    addresses: PartitionAddress[];
    tap: string | null;
    extras: PartitionExtras;
    instance: PartitionInstanceState | null;
  }[];
}

/** What a computer must install and run, read in one snapshot-consistent transaction. */
export async function readDesiredState(db: Db, actor: Actor, computerId: string): Promise<DesiredState> {
  return db.transaction(
    async (tx) => {
      const computer = await touchComputer(tx, actor, computerId);
      const [software, partitionRows] = await Promise.all([
        tx
          .select({ url: softwareInstallations.url, requestedState: softwareInstallations.requestedState })
          .from(softwareInstallations)
          .where(eq(softwareInstallations.computerId, computerId))
          .orderBy(asc(softwareInstallations.url)),
        tx.select().from(partitions).where(eq(partitions.computerId, computerId)).orderBy(asc(partitions.id)),
      ]);
      const instanceIds = partitionRows
        .map((partition) => partition.instanceId)
        .filter((id): id is string => id !== null);
      const [instances, shared] =
        instanceIds.length === 0
          ? [[], []]
          : await Promise.all([
              tx.select().from(softwareInstances).where(inArray(softwareInstances.id, instanceIds)),
              tx
                .select()
                .from(softwareInstances)
                .where(
                  and(
                    inArray(softwareInstances.hostInstanceId, instanceIds),
                    isNull(softwareInstances.destroyedAt),
                  ),
                )
                .orderBy(asc(softwareInstances.createdAt)),
            ]);
      const instanceById = new Map(instances.map((instance) => [instance.id, instance]));
      return {
        computerId,
        version: computer.desiredVersion,
        software,
        partitions: partitionRows.map((partition) => {
          const instance = partition.instanceId ? instanceById.get(partition.instanceId) : undefined;
          return {
            reference: partition.reference,
            addresses: partition.addresses,
            tap: partition.tap,
            extras: partition.extras,
            instance: instance
              ? {
                  id: instance.id,
                  title: instance.title,
                  softwareReleaseUrl: instance.softwareReleaseUrl,
                  softwareType: instance.softwareType,
                  parameters: instance.parameters,
                  requestedState: instance.requestedState,
                  timestamp: instance.timestamp,
                  connectionParameters: instance.connectionParameters,
                  sharedInstances: shared
                    .filter((entry) => entry.hostInstanceId === instance.id)
                    .map((entry) => ({
                      id: entry.id,
                      title: entry.title,
                      softwareType: entry.softwareType,
                      parameters: entry.parameters,
                    })),
                }
              : null,
          };
        }),
      };
    },
    { isolationLevel: "repeatable read" },
  );
}

/**
 * Wakes long-polling nodes when their computer's desired state changes. One per master process,
 * fed by the database's change notifications, so a change made through any master wakes them.
 */
export class DesiredStateWaiters {
  private readonly waiters = new Map<string, Set<() => void>>();

  /** Called for each committed change notification. */
  notify(computerId: string): void {
    const waiting = this.waiters.get(computerId);
    if (!waiting) return;
    this.waiters.delete(computerId);
    for (const wake of waiting) wake();
  }

  /**
   * Returns the desired state as soon as its version exceeds `afterVersion`, or the current one
   * after `timeoutMs` (or when `signal` aborts, e.g. the client went away).
   */
  async wait(
    db: Db,
    actor: Actor,
    computerId: string,
    afterVersion: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<DesiredState> {
    // Registered before reading, so a change committed in between is not missed.
    let wake = () => {};
    const changed = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const waiting = this.waiters.get(computerId) ?? new Set();
    waiting.add(wake);
    this.waiters.set(computerId, waiting);
    try {
      const current = await readDesiredState(db, actor, computerId);
      if (current.version > afterVersion || timeoutMs <= 0) return current;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        signal?.addEventListener("abort", () => resolve(), { once: true });
      });
      await Promise.race([changed, timedOut]);
      clearTimeout(timer);
      return await readDesiredState(db, actor, computerId);
    } finally {
      this.waiters.get(computerId)?.delete(wake);
      if (this.waiters.get(computerId)?.size === 0) this.waiters.delete(computerId);
    }
  }
}
