import { and, eq, isNull, sql } from "drizzle-orm";
import type { Executor } from "../db/connect.js";
import { certificates } from "../db/schema.js";
import {
  type Authority,
  type IdentityKind,
  type IssuedCertificate,
  issueClientCertificate,
} from "../identity/authority.js";

/**
 * Issues a client certificate and records it, so that the master recognises (and can revoke) it.
 * The private key is kept only for instances: the node running one fetches it to act as it.
 */
export async function issueRecordedCertificate(
  executor: Executor,
  authority: Authority,
  kind: IdentityKind,
  subjectId: string,
  days?: number,
): Promise<IssuedCertificate> {
  const issued = issueClientCertificate(authority, kind, subjectId, days);
  await executor.insert(certificates).values({
    serial: issued.serial,
    kind,
    subjectId,
    certificatePem: issued.certificatePem,
    privateKeyPem: kind === "instance" ? issued.privateKeyPem : null,
    expiresAt: issued.expiresAt,
  });
  return issued;
}

/** Revokes every certificate of a subject still in force: it authenticates nowhere from now on. */
export async function revokeCertificates(
  executor: Executor,
  kind: IdentityKind,
  subjectId: string,
): Promise<void> {
  await executor
    .update(certificates)
    .set({ revokedAt: sql`now()` })
    .where(
      and(eq(certificates.kind, kind), eq(certificates.subjectId, subjectId), isNull(certificates.revokedAt)),
    );
}
