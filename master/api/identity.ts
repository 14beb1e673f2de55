import type { TLSSocket } from "node:tls";
import { and, eq, gt, isNull, ne, or, sql } from "drizzle-orm";
import type { Context, MiddlewareHandler } from "hono";
import { certificates, persons } from "../db/schema.js";
import type { Actor } from "../model/actor.js";
import type { MasterEnv } from "./context.js";
import { errorResponse } from "./errors.js";

/**
 * Resolves the caller from its TLS client certificate: a certificate signed by our CA, known,
 * not revoked and not expired. In insecure mode every caller is the admin.
 */
export const identify: MiddlewareHandler<MasterEnv> = async (c, next) => {
  const services = c.get("services");
  if (services.insecureAdminId) {
    c.set("actor", { kind: "person", id: services.insecureAdminId, isAdmin: true });
    return next();
  }
  const serial = presentedSerial(c);
  if (serial) c.set("actor", await actorForSerial(services.db, serial));
  return next();
};

/**
 * The serial of the client certificate the caller presented, when our CA signed it (upper-case
 * hex, as the certificates table records it); undefined without one, and in insecure mode.
 */
export function presentedSerial(c: Context<MasterEnv>): string | undefined {
  const socket = c.env.incoming.socket as Partial<TLSSocket>;
  const peer = socket.authorized && socket.getPeerCertificate ? socket.getPeerCertificate() : undefined;
  return peer?.serialNumber ? peer.serialNumber.toUpperCase() : undefined;
}

async function actorForSerial(
  db: MasterEnv["Variables"]["services"]["db"],
  serial: string,
): Promise<Actor | undefined> {
  const [row] = await db
    .select({ kind: certificates.kind, subjectId: certificates.subjectId, isAdmin: persons.isAdmin })
    .from(certificates)
    .leftJoin(persons, and(eq(certificates.kind, "person"), eq(persons.id, certificates.subjectId)))
    .where(
      and(
        eq(certificates.serial, serial),
        isNull(certificates.revokedAt),
        gt(certificates.expiresAt, sql`now()`),
        // Revoking a person revokes their certificates too; this holds even for one that escaped.
        or(
          ne(certificates.kind, "person"),
          and(eq(persons.id, certificates.subjectId), isNull(persons.revokedAt)),
        ),
      ),
    );
  if (!row) return undefined;
  return row.kind === "person"
    ? { kind: "person", id: row.subjectId, isAdmin: row.isAdmin ?? false }
    : { kind: row.kind, id: row.subjectId };
}

/** Routes below this need an identity: 401 with what to do otherwise. */
export const requireActor: MiddlewareHandler<MasterEnv> = async (c, next) => {
  if (!c.get("actor")) {
    return errorResponse(
      c,
      401,
      "unauthenticated",
      "no valid client certificate: present one issued by this master (person, computer or instance), not revoked or expired",
    );
  }
  return next();
};

/** The caller, once requireActor ran. */
export function actorOf(c: { get(key: "actor"): Actor | undefined }): Actor {
  const actor = c.get("actor");
  if (!actor) throw new Error("requireActor must run before this handler");
  return actor;
}
