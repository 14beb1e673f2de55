import { and, eq, gt, isNull, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/connect.js";
import { certificates, computers, persons } from "../db/schema.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "./actor.js";
import { issueRecordedCertificate } from "./certificates.js";
import { forbidden } from "./errors.js";

export interface RenewedCertificate {
  certificate: string;
  privateKey: string;
  caCertificate: string;
  expiresAt: string;
}

/**
 * A new certificate (and key, made here and answered once, as at registration) for the person
 * or computer presenting `presentedSerial`, lasting a full lifetime from now.
 *
 * The presented certificate is not revoked: it keeps working until its own expiry, so a caller
 * that loses the answer (a node that crashes before it wrote the new files) renews again with
 * the old one instead of being locked out. Revoking the subject (a person's revocation, a
 * computer's deregistration or re-registration) revokes every certificate it holds, renewed
 * ones included.
 */
export async function renewCertificate(
  db: Db,
  authority: Authority,
  actor: Actor,
  presentedSerial: string | undefined,
): Promise<RenewedCertificate> {
  if (actor.kind === "instance") {
    throw forbidden(
      `instance certificates are not renewed: instance ${actor.id}'s lasts as long as the instance, and its node fetches it again when it redeploys`,
    );
  }
  if (!presentedSerial) {
    throw forbidden(
      "only a caller presenting a client certificate renews it; with --insecure-http there is none to renew",
    );
  }
  return db.transaction(async (tx) => {
    // Shared with other renewals, exclusive of revocation, deregistration and re-registration,
    // which lock the same row before they revoke: a renewal is either seen and revoked by them,
    // or runs after them and is refused below.
    await lockLiveSubject(tx, actor);
    const [presented] = await tx
      .select({ serial: certificates.serial })
      .from(certificates)
      .where(
        and(
          eq(certificates.serial, presentedSerial),
          eq(certificates.kind, actor.kind),
          eq(certificates.subjectId, actor.id),
          isNull(certificates.revokedAt),
          gt(certificates.expiresAt, sql`now()`),
        ),
      );
    if (!presented) {
      throw forbidden(
        `the certificate presented (serial ${presentedSerial}) has just been revoked or has expired: it renews nothing`,
      );
    }
    const issued = await issueRecordedCertificate(tx, authority, actor.kind, actor.id);
    return {
      certificate: issued.certificatePem,
      privateKey: issued.privateKeyPem,
      caCertificate: authority.certificatePem,
      expiresAt: issued.expiresAt.toISOString(),
    };
  });
}

async function lockLiveSubject(tx: Executor, actor: Actor & { kind: "person" | "computer" }): Promise<void> {
  if (actor.kind === "person") {
    const [person] = await tx
      .select({ revokedAt: persons.revokedAt })
      .from(persons)
      .where(eq(persons.id, actor.id))
      .for("share");
    if (!person || person.revokedAt) {
      throw forbidden(`person ${actor.id} has been revoked: an admin creates a new person if access is due`);
    }
    return;
  }
  const [computer] = await tx
    .select({ deregisteredAt: computers.deregisteredAt })
    .from(computers)
    .where(eq(computers.id, actor.id))
    .for("share");
  if (!computer || computer.deregisteredAt) {
    throw forbidden(`computer ${actor.id} has been deregistered: register the host again with a new token`);
  }
}
