import { sql } from "drizzle-orm";
import { type Executor, type Rows, rowsOf } from "../db/connect.js";
import { allocatePartition } from "./allocation.js";
import { scopeAdmits } from "./scope.js";
import { COMPUTER_SLA_KEYS, isNumericSlaKey, parseSla, slaCondition } from "./sla.js";

interface WaitingRequest extends Record<string, unknown> {
  id: string;
  software_release_url: string;
  sla: Record<string, string>;
  owner_id: string;
}

/** A waiting request's SLA key as SQL: absent keys ask nothing. */
function waitingMatches(): ReturnType<typeof sql> {
  return sql.join(
    COMPUTER_SLA_KEYS.map((key) => {
      const raw = sql.raw(`(i.sla->>'${key}')`);
      const wanted = isNumericSlaKey(key) ? sql`${raw}::float8` : raw;
      return sql`(${raw} is null or ${slaCondition(key, wanted)})`;
    }),
    sql` and `,
  );
}

/**
 * Places requests that found no partition when they were made, now that these computers have
 * room (a partition freed, partitions uploaded, settings or scope changed). Per computer, only
 * the waiting requests that computer satisfies are looked at, oldest first, as many as it has
 * free partitions: a request nothing can satisfy never holds up the others. Runs inside the
 * transaction that made the room; requests being placed by someone else are skipped, not waited on.
 */
export async function placeWaiting(tx: Executor, computerIds: Iterable<string>): Promise<number> {
  let placed = 0;
  for (const computerId of [...new Set(computerIds)].sort()) {
    const waiting = rowsOf(
      (await tx.execute<WaitingRequest>(sql`
        select i.id, i.software_release_url, i.sla, i.owner_id
          from computers c, software_instances i
         where c.id = ${computerId} and c.deregistered_at is null and c.free_partitions > 0
           and i.partition_id is null and i.shared = false and i.destroyed_at is null
           and i.requested_state <> 'destroyed'
           and ${waitingMatches()}
           and ${scopeAdmits(sql`c.allocation_scope`, sql`c.owner_id`, sql`i.owner_id`)}
         order by i.created_at, i.id
         limit (select free_partitions from computers where id = ${computerId})
         for update of i skip locked`)) as Rows<WaitingRequest>,
    );
    for (const request of waiting) {
      const allocation = await allocatePartition(tx, {
        instanceId: request.id,
        softwareReleaseUrl: request.software_release_url,
        sla: { ...parseSla(request.sla), computerGuid: computerId },
        conditions: request.sla,
        requesterId: request.owner_id,
      });
      if (!allocation) break; // its last free partitions went to concurrent requests
      placed++;
    }
  }
  return placed;
}
