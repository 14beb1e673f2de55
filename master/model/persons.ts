import { eq } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { persons } from "../db/schema.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "./actor.js";
import { issueRecordedCertificate } from "./certificates.js";
import { forbidden, invalid } from "./errors.js";
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

/** The first admin, if any: the master creates one on its first start. */
export async function findAdmin(db: Db): Promise<string | undefined> {
  const [admin] = await db.select({ id: persons.id }).from(persons).where(eq(persons.isAdmin, true)).limit(1);
  return admin?.id;
}
