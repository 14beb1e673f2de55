import { inArray, isNotNull, sql } from "drizzle-orm";
import { DESIRED_STATE_CHANNEL, type Executor } from "../db/connect.js";
import { partitions, softwareInstances } from "../db/schema.js";

/**
 * A new SLAP timestamp: now in ms, and always past the previous one, so a node redeploys even
 * when two changes land within the same millisecond.
 */
export const nextTimestamp = sql`greatest((extract(epoch from clock_timestamp()) * 1000)::bigint, ${softwareInstances.timestamp} + 1)`;

/** Tells the nodes of these computers that their desired state changed (on commit). One statement. */
export async function bumpComputers(tx: Executor, computerIds: Iterable<string>): Promise<void> {
  const ids = [...new Set(computerIds)].sort();
  if (ids.length === 0) return;
  await tx.execute(sql`
    with bumped as (
      update computers set desired_version = desired_version + 1
      where id in (${sql.join(
        ids.map((id) => sql`${id}`),
        sql`, `,
      )}) returning id)
    select pg_notify(${DESIRED_STATE_CHANNEL}, id) from bumped`);
}

/**
 * Gives these instances a new timestamp, so their nodes redeploy them, and wakes those nodes.
 * Instances without a partition (pending, shared) only get the timestamp.
 */
export async function bumpInstances(tx: Executor, instanceIds: Iterable<string>): Promise<void> {
  const ids = [...new Set(instanceIds)].sort();
  if (ids.length === 0) return;
  await tx
    .update(softwareInstances)
    .set({ timestamp: nextTimestamp })
    .where(inArray(softwareInstances.id, ids));
  const hosting = await tx
    .select({ computerId: partitions.computerId })
    .from(partitions)
    .where(sql`${inArray(partitions.instanceId, ids)} and ${isNotNull(partitions.instanceId)}`);
  await bumpComputers(
    tx,
    hosting.map((row) => row.computerId),
  );
}
