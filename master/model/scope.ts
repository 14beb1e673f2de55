import { type SQL, sql } from "drizzle-orm";

/**
 * Whether a scope (`personal`, `organisation`, `open`) held by an owner admits a requester: the
 * owner always; a member of one of the owner's organisations under `organisation`; anyone under
 * `open`. One SQL condition, so allocation, placement and shared-instance attachment filter in
 * the query that finds candidates, never after it.
 */
export function scopeAdmits(scope: SQL, ownerId: SQL, requesterId: string | SQL): SQL {
  return sql`(${ownerId} = ${requesterId} or ${scope} = 'open' or (${scope} = 'organisation' and exists (
    select 1 from organisation_members mine join organisation_members theirs
      on theirs.organisation_id = mine.organisation_id
     where mine.person_id = ${ownerId} and theirs.person_id = ${requesterId})))`;
}
