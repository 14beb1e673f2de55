import { and, eq, isNull, ne, sql } from "drizzle-orm";
import type { Db } from "../db/connect.js";
import { partitions, softwareInstallations, softwareInstances } from "../db/schema.js";
import type { Actor } from "./actor.js";
import { bumpComputers } from "./changes.js";
import { getComputer, type SoftwareView, touchComputer } from "./computers.js";
import { conflict, forbidden, invalid, notFound } from "./errors.js";

export type SupplyState = "available" | "destroyed";
export type SoftwareReport = "building" | "available" | "error" | "destroyed";

/**
 * Asks a computer to install (`available`) or remove (`destroyed`) a software release. Removal
 * is refused while an instance on that computer still uses the release.
 */
export async function supplySoftware(
  db: Db,
  actor: Actor,
  computerId: string,
  url: string,
  state: SupplyState,
): Promise<SoftwareView> {
  if (url.trim() === "") throw invalid("url", "a software release needs a URL");
  const computer = await getComputer(db, actor, computerId);
  if (actor.kind !== "person") throw forbidden(`${actor.kind} ${actor.id} may not supply software`);
  if (computer.ownerId !== actor.id && !actor.isAdmin) {
    throw forbidden(
      `person ${actor.id} may not supply software to computer ${computerId}, which it does not own`,
    );
  }
  return db.transaction(async (tx) => {
    if (state === "destroyed") {
      const users = await tx
        .select({ id: softwareInstances.id, title: softwareInstances.title })
        .from(softwareInstances)
        .innerJoin(partitions, eq(partitions.instanceId, softwareInstances.id))
        .where(
          and(
            eq(partitions.computerId, computerId),
            eq(softwareInstances.softwareReleaseUrl, url),
            isNull(softwareInstances.destroyedAt),
          ),
        );
      if (users.length > 0) {
        throw conflict(
          `software release ${url} is still used on ${computerId} by ${users.map((user) => `'${user.title}' (${user.id})`).join(", ")}; destroy those instances first`,
        );
      }
    }
    const [row] = await tx
      .insert(softwareInstallations)
      .values({ computerId, url, requestedState: state })
      .onConflictDoUpdate({
        target: [softwareInstallations.computerId, softwareInstallations.url],
        set: { requestedState: state, requestedAt: sql`now()` },
        setWhere: ne(softwareInstallations.requestedState, state),
      })
      .returning();
    if (row) await bumpComputers(tx, [computerId]);
    const [current] = await tx
      .select()
      .from(softwareInstallations)
      .where(and(eq(softwareInstallations.computerId, computerId), eq(softwareInstallations.url, url)));
    if (!current) throw new Error("unreachable: the installation was just written");
    return {
      url,
      requestedState: current.requestedState,
      reportedState: current.reportedState,
      errorLog: current.errorLog,
    };
  });
}

/** The node reports the state of an installation, with the tail of the build log on error. */
export async function reportSoftwareState(
  db: Db,
  actor: Actor,
  computerId: string,
  url: string,
  state: SoftwareReport,
  errorLog?: string,
): Promise<SoftwareView> {
  return db.transaction(async (tx) => {
    await touchComputer(tx, actor, computerId);
    const [row] = await tx
      .update(softwareInstallations)
      .set({
        reportedState: state,
        reportedAt: sql`now()`,
        errorLog: state === "error" ? (errorLog ?? "") : null,
      })
      .where(and(eq(softwareInstallations.computerId, computerId), eq(softwareInstallations.url, url)))
      .returning();
    if (!row) throw notFound(`software release ${url} is not supplied to computer ${computerId}`);
    if (state === "destroyed" && row.requestedState === "destroyed") {
      // Removal done: the supply disappears from the computer's desired state.
      await tx
        .delete(softwareInstallations)
        .where(and(eq(softwareInstallations.computerId, computerId), eq(softwareInstallations.url, url)));
      await bumpComputers(tx, [computerId]);
    }
    return {
      url,
      requestedState: row.requestedState,
      reportedState: row.reportedState,
      errorLog: row.errorLog,
    };
  });
}
