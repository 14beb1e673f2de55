import { and, desc, eq, gt, isNull, sql } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { certificates, partitions, softwareInstances } from "../db/schema.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "./actor.js";
import { issueRecordedCertificate } from "./certificates.js";
import { conflict, forbidden, notFound } from "./errors.js";

export interface InstanceCredentials {
  certificate: string;
  privateKey: string;
  caCertificate: string;
}

/**
 * The certificate and key an allocated instance acts with (its buildout recipes publish and
 * request with them). Only the computer running the instance gets them. Issued on first
 * fetch, which is when the node deploys the instance: key generation stays out of the
 * allocation transaction. Revoked when the instance is destroyed.
 */
export async function getInstanceCredentials(
  db: Db,
  authority: Authority,
  actor: Actor,
  instanceId: string,
): Promise<InstanceCredentials> {
  return db.transaction(async (tx) => {
    const [row] = await tx
      .select({ instance: softwareInstances, computerId: partitions.computerId })
      .from(softwareInstances)
      .leftJoin(partitions, eq(partitions.instanceId, softwareInstances.id))
      .where(eq(softwareInstances.id, instanceId))
      .for("update", { of: softwareInstances });
    if (!row) throw notFound(`no software instance ${instanceId}`);
    const allowed =
      (actor.kind === "person" && actor.isAdmin) ||
      (actor.kind === "computer" && actor.id === row.computerId);
    if (!allowed)
      throw forbidden(`${actor.kind} ${actor.id} may not fetch the credentials of instance ${instanceId}`);
    if (row.instance.destroyedAt || !row.computerId) {
      throw conflict(
        `instance ${instanceId} has no partition (pending, shared or destroyed): it has no credentials`,
      );
    }
    const [existing] = await tx
      .select()
      .from(certificates)
      .where(
        and(
          eq(certificates.kind, "instance"),
          eq(certificates.subjectId, instanceId),
          isNull(certificates.revokedAt),
          gt(certificates.expiresAt, sql`now()`),
        ),
      )
      .orderBy(desc(certificates.issuedAt))
      .limit(1);
    if (existing?.privateKeyPem) {
      return {
        certificate: existing.certificatePem,
        privateKey: existing.privateKeyPem,
        caCertificate: authority.certificatePem,
      };
    }
    const issued = await issueRecordedCertificate(tx, authority, "instance", instanceId);
    return {
      certificate: issued.certificatePem,
      privateKey: issued.privateKeyPem,
      caCertificate: authority.certificatePem,
    };
  });
}
