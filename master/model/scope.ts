import { eq, type SQL, sql } from "drizzle-orm";
import type { Executor } from "../db/connect.js";
import { computers, type Scope } from "../db/schema.js";

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

/** In words, whom a scope admits: for refusals that say what to ask for. */
export function whomScopeAdmits(scope: Scope): string {
  if (scope === "personal") return "its owner only";
  if (scope === "organisation") return "its owner and the members of the owner's organisations only";
  return "anyone";
}

export interface ComputerConsent {
  allocationScope: Scope;
  /** Whether its allocation scope admits the person asked about. */
  admits: boolean;
  deregisteredAt: Date | null;
}

/** Whether a computer's owner consents to a person's instances there; undefined: no such computer. */
export async function computerConsent(
  executor: Executor,
  computerId: string,
  personId: string,
): Promise<ComputerConsent | undefined> {
  const [computer] = await executor
    .select({
      allocationScope: computers.allocationScope,
      admits: sql<boolean>`${scopeAdmits(sql`${computers.allocationScope}`, sql`${computers.ownerId}`, personId)}`,
      deregisteredAt: computers.deregisteredAt,
    })
    .from(computers)
    .where(eq(computers.id, computerId));
  return computer;
}
