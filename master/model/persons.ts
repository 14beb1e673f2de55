import { and, asc, eq, inArray, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { persons } from "../db/schema.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "./actor.js";
import { issueRecordedCertificate, revokeCertificates } from "./certificates.js";
import { expireTokens } from "./computers.js";
import { conflict, forbidden, invalid, notFound } from "./errors.js";
import { newId } from "./ids.js";

export interface PersonIdentity {
  personId: string;
  certificate: string;
  privateKey: string;
}

/** Creates a person with a client certificate; only admins create persons (the first is created at start). */
export async function createPerson(
  db: Db,
  authority: Authority,
  actor: Actor | "bootstrap",
  options: { name: string; email?: string; isAdmin?: boolean },
): Promise<PersonIdentity> {
  if (actor !== "bootstrap" && !(actor.kind === "person" && actor.isAdmin)) {
    throw forbidden("only an admin creates persons");
  }
  if (options.name.trim() === "") throw invalid("name", "a person needs a name");
  const personId = newId("PERSON");
  const issued = await db.transaction(async (tx) => {
    await tx.insert(persons).values({
      id: personId,
      name: options.name,
      email: options.email ?? null,
      isAdmin: options.isAdmin ?? false,
    });
    return issueRecordedCertificate(tx, authority, "person", personId);
  });
  return { personId, certificate: issued.certificatePem, privateKey: issued.privateKeyPem };
}

/** The first admin still in office, if any: the master creates one on its first start. */
export async function findAdmin(db: Db): Promise<string | undefined> {
  const [admin] = await db
    .select({ id: persons.id })
    .from(persons)
    .where(and(eq(persons.isAdmin, true), isNull(persons.revokedAt)))
    .orderBy(asc(persons.createdAt))
    .limit(1);
  return admin?.id;
}

/**
 * An admin removes a person for good: every certificate of theirs is revoked and their unused
 * registration tokens expire. What they own stays as it is (computers keep serving, instances
 * keep running) for an admin to act on. No admin revokes themselves, so the master always keeps
 * the admin who acted.
 */
export async function revokePerson(db: Db, actor: Actor, personId: string): Promise<void> {
  if (actor.kind !== "person" || !actor.isAdmin) {
    throw forbidden(`only an admin revokes persons, not ${actor.kind} ${actor.id}`);
  }
  if (personId === actor.id) {
    throw conflict("you cannot revoke yourself: another admin must, so that the master always keeps one");
  }
  await db.transaction(async (tx) => {
    // Both rows locked in id order: two admins revoking each other at once are serialised
    // (without deadlock), and the second finds that it was revoked.
    const rows = await tx
      .select({ id: persons.id, isAdmin: persons.isAdmin, revokedAt: persons.revokedAt })
      .from(persons)
      .where(inArray(persons.id, [actor.id, personId]))
      .orderBy(asc(persons.id))
      .for("update");
    const self = rows.find((row) => row.id === actor.id);
    const target = rows.find((row) => row.id === personId);
    if (!self || self.revokedAt || !self.isAdmin) {
      throw forbidden(`person ${actor.id} is no longer an admin and may not revoke persons`);
    }
    if (!target) throw notFound(`no person ${personId}`);
    if (target.revokedAt) {
      throw conflict(`person ${personId} is already revoked (since ${target.revokedAt.toISOString()})`);
    }
    await tx.update(persons).set({ revokedAt: sql`now()` }).where(eq(persons.id, personId));
    await revokeCertificates(tx, "person", personId);
    await expireTokens(tx, { personId });
  });
}
