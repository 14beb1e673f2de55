import { createHash, randomBytes } from "node:crypto";
import { and, asc, eq, gt, inArray, isNull, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/connect.js";
import {
  type Capabilities,
  computers,
  type PartitionAddress,
  type PartitionExtras,
  partitions,
  persons,
  registrationTokens,
  SCOPES,
  type Scope,
  softwareInstallations,
} from "../db/schema.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "./actor.js";
import { issueRecordedCertificate, revokeCertificates } from "./certificates.js";
import { bumpComputers, bumpInstances } from "./changes.js";
import { conflict, forbidden, invalid, notFound } from "./errors.js";
import { newId } from "./ids.js";
import { placeWaiting } from "./placement.js";

/** What format made of a partition: the node uploads it. */
export interface PartitionLayout {
  reference: string;
  addresses: PartitionAddress[];
  tap?: string | null;
}

export interface PartitionView extends Required<PartitionLayout> {
  extras: PartitionExtras;
  state: "free" | "busy";
  instanceId: string | null;
}

/** A partition's extras: a value sets one, null clears it, undefined keeps it. */
export interface PartitionSettings {
  routableIpv4?: string | null;
  blockDevice?: string | null;
}

export interface SoftwareView {
  url: string;
  requestedState: "available" | "destroyed";
  reportedState: "building" | "available" | "error" | "destroyed" | null;
  errorLog: string | null;
}

export interface ComputerView {
  id: string;
  title: string;
  ownerId: string;
  region: string | null;
  capabilities: Capabilities;
  pricePerPartitionHour: number;
  /** Whose requests may be placed here. */
  allocationScope: Scope;
  lastContactAt: string | null;
  desiredVersion: number;
  partitions: PartitionView[];
  software: SoftwareView[];
}

export interface ComputerSettings {
  title?: string;
  region?: string | null;
  capabilities?: Capabilities;
  pricePerPartitionHour?: number;
  allocationScope?: Scope;
}

export interface Registration {
  computerId: string;
  certificate: string;
  privateKey: string;
  caCertificate: string;
}

const TOKEN_PREFIX = "slapreg-";

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

type ComputerRow = typeof computers.$inferSelect;

async function loadComputer(executor: Executor, id: string): Promise<ComputerRow> {
  const [row] = await executor.select().from(computers).where(eq(computers.id, id));
  if (!row || row.deregisteredAt) throw notFound(`no computer ${id}`);
  return row;
}

/** Owners (and admins) manage a computer; the computer itself reads and reports its own. */
function authorize(actor: Actor, computer: ComputerRow, access: "read" | "bang" | "manage" | "node"): void {
  if (actor.kind === "person" && (actor.isAdmin || (computer.ownerId === actor.id && access !== "node")))
    return;
  if (actor.kind === "computer" && actor.id === computer.id && access !== "manage") return;
  throw forbidden(
    `${actor.kind} ${actor.id} may not ${access === "node" ? "act as" : access} computer ${computer.id}`,
  );
}

export async function viewComputers(executor: Executor, rows: ComputerRow[]): Promise<ComputerView[]> {
  const ids = rows.map((row) => row.id);
  const [partitionRows, softwareRows] =
    ids.length === 0
      ? [[], []]
      : await Promise.all([
          executor
            .select()
            .from(partitions)
            .where(inArray(partitions.computerId, ids))
            .orderBy(asc(partitions.id)),
          executor
            .select()
            .from(softwareInstallations)
            .where(inArray(softwareInstallations.computerId, ids))
            .orderBy(asc(softwareInstallations.url)),
        ]);
  return rows.map((row) => ({
    id: row.id,
    title: row.title,
    ownerId: row.ownerId,
    region: row.region,
    capabilities: row.capabilities,
    pricePerPartitionHour: row.pricePerPartitionHour,
    allocationScope: row.allocationScope,
    lastContactAt: row.lastContactAt?.toISOString() ?? null,
    desiredVersion: row.desiredVersion,
    partitions: partitionRows.filter((partition) => partition.computerId === row.id).map(viewPartition),
    software: softwareRows
      .filter((software) => software.computerId === row.id)
      .map((software) => ({
        url: software.url,
        requestedState: software.requestedState,
        reportedState: software.reportedState,
        errorLog: software.errorLog,
      })),
  }));
}

type PartitionRow = typeof partitions.$inferSelect;

function viewPartition(partition: PartitionRow): PartitionView {
  return {
    reference: partition.reference,
    addresses: partition.addresses,
    tap: partition.tap,
    extras: partition.extras,
    state: partition.state,
    instanceId: partition.instanceId,
  };
}

async function viewOne(executor: Executor, row: ComputerRow): Promise<ComputerView> {
  const [view] = await viewComputers(executor, [row]);
  if (!view) throw new Error("unreachable: a view for every row");
  return view;
}

/**
 * A one-time token a person hands to a new node (`slap node register`, `slap bootstrap`). Only
 * its hash is stored. With `computerId`, it re-registers that existing computer (a rebuilt node).
 */
export async function createRegistrationToken(
  db: Db,
  actor: Actor,
  options: { computerId?: string; ttlSeconds?: number } = {},
): Promise<{ token: string; expiresAt: string }> {
  if (actor.kind !== "person")
    throw forbidden(`only persons issue registration tokens, not ${actor.kind} ${actor.id}`);
  const token = `${TOKEN_PREFIX}${randomBytes(24).toString("base64url")}`;
  const expiresAt = new Date(Date.now() + (options.ttlSeconds ?? 3600) * 1000);
  await db.transaction(async (tx) => {
    const { computerId } = options;
    if (computerId) {
      // Shared with other tokens, exclusive of a deregistration: one running at the same time
      // either comes first (and the computer is gone here) or sees this token and ends it.
      const [computer] = await tx.select().from(computers).where(eq(computers.id, computerId)).for("share");
      if (!computer || computer.deregisteredAt) throw notFound(`no computer ${computerId}`);
      authorize(actor, computer, "manage");
    }
    await tx.insert(registrationTokens).values({
      tokenHash: hashToken(token),
      personId: actor.id,
      computerId: computerId ?? null,
      expiresAt,
    });
  });
  return { token, expiresAt: expiresAt.toISOString() };
}

/** Ends the unused registration tokens of a person or of a computer: they register nothing more. */
export async function expireTokens(
  executor: Executor,
  of: { personId: string } | { computerId: string },
): Promise<void> {
  await executor
    .update(registrationTokens)
    .set({ expiresAt: sql`now()` })
    .where(
      and(
        "personId" in of
          ? eq(registrationTokens.personId, of.personId)
          : eq(registrationTokens.computerId, of.computerId),
        isNull(registrationTokens.usedAt),
        gt(registrationTokens.expiresAt, sql`now()`),
      ),
    );
}

/**
 * Exchanges a registration token for a computer identity: a new computer owned by the token's
 * person (or the existing one the token names), with a fresh certificate; older certificates of
 * that computer are revoked. The token works once, and not at all once its person is revoked or
 * its computer deregistered.
 */
export async function registerComputer(
  db: Db,
  authority: Authority,
  token: string,
  options: { title?: string } = {},
): Promise<Registration> {
  const tokenHash = hashToken(token);
  const spent = () =>
    invalid("token", "the registration token is unknown, expired or already used; ask for a new one");
  return db.transaction(async (tx) => {
    // The person's and the computer's rows are locked before the token's, in the order person
    // revocation, renewal and deregistration take them, so none of those can slip in between.
    const [found] = await tx
      .select({ personId: registrationTokens.personId, computerId: registrationTokens.computerId })
      .from(registrationTokens)
      .where(eq(registrationTokens.tokenHash, tokenHash));
    if (!found) throw spent();
    const [person] = await tx
      .select({ revokedAt: persons.revokedAt })
      .from(persons)
      .where(eq(persons.id, found.personId))
      .for("share");
    const [computer] = found.computerId
      ? await tx
          .select({ deregisteredAt: computers.deregisteredAt })
          .from(computers)
          .where(eq(computers.id, found.computerId))
          .for("update")
      : [];
    const [claimed] = await tx
      .update(registrationTokens)
      .set({ usedAt: sql`now()` })
      .where(
        and(
          eq(registrationTokens.tokenHash, tokenHash),
          isNull(registrationTokens.usedAt),
          gt(registrationTokens.expiresAt, sql`now()`),
        ),
      )
      .returning();
    if (!claimed) throw spent();
    // Refusals roll the claim back: the token stays as it was, and still registers nothing.
    if (!person || person.revokedAt) {
      throw invalid(
        "token",
        "the person who created this registration token has been revoked: ask a current user of the master for a new token",
      );
    }
    let computerId = claimed.computerId;
    if (computerId && (!computer || computer.deregisteredAt)) {
      throw invalid(
        "token",
        `computer ${computerId} was deregistered: a token made for it registers nothing; to register this host as a new computer, use a token created without computerId`,
      );
    }
    if (computerId) {
      await revokeCertificates(tx, "computer", computerId);
      if (options.title)
        await tx.update(computers).set({ title: options.title }).where(eq(computers.id, computerId));
    } else {
      computerId = newId("COMP");
      await tx
        .insert(computers)
        .values({ id: computerId, title: options.title || computerId, ownerId: claimed.personId });
    }
    const issued = await issueRecordedCertificate(tx, authority, "computer", computerId);
    return {
      computerId,
      certificate: issued.certificatePem,
      privateKey: issued.privateKeyPem,
      caCertificate: authority.certificatePem,
    };
  });
}

/**
 * Records the partitions a node formatted. Idempotent upsert by reference: addresses and taps
 * are updated, partitions missing from the upload are kept (format never shrinks silently),
 * a busy partition stays busy, and extras stay as the master set them (a re-format keeps them).
 */
export async function uploadPartitions(
  db: Db,
  actor: Actor,
  computerId: string,
  layout: PartitionLayout[],
): Promise<ComputerView> {
  const seen = new Set<string>();
  for (const [index, partition] of layout.entries()) {
    if (seen.has(partition.reference)) {
      throw invalid(`partitions[${index}].reference`, `partition ${partition.reference} appears twice`);
    }
    seen.add(partition.reference);
  }
  return db.transaction(async (tx) => {
    const computer = await loadComputer(tx, computerId);
    authorize(actor, computer, "node");
    if (layout.length > 0) {
      const changed = await tx
        .insert(partitions)
        .values(
          layout.map((partition) => ({
            computerId,
            reference: partition.reference,
            addresses: partition.addresses,
            tap: partition.tap ?? null,
          })),
        )
        .onConflictDoUpdate({
          target: [partitions.computerId, partitions.reference],
          set: { addresses: sql`excluded.addresses`, tap: sql`excluded.tap` },
          setWhere: sql`(${partitions.addresses}, ${partitions.tap}) is distinct from (excluded.addresses, excluded.tap)`,
        })
        .returning({ id: partitions.id });
      if (changed.length > 0) {
        await tx
          .update(computers)
          .set({
            freePartitions: sql`(select count(*) from ${partitions} where ${partitions.computerId} = ${computerId} and ${partitions.state} = 'free')`,
          })
          .where(eq(computers.id, computerId));
        await bumpComputers(tx, [computerId]);
        await placeWaiting(tx, [computerId]);
      }
    }
    const [touched] = await tx
      .update(computers)
      .set({ lastContactAt: sql`now()` })
      .where(eq(computers.id, computerId))
      .returning();
    return viewOne(tx, touched ?? computer);
  });
}

/**
 * Sets or clears the extras of one partition (a routable IPv4, a block device), which the node
 * applies before deploying the partition's instance. Only the computer's owner (or an admin) may:
 * they are the computer's resources. A routable IPv4 serves one partition of all computers.
 */
export async function configurePartition(
  db: Db,
  actor: Actor,
  computerId: string,
  reference: string,
  settings: PartitionSettings,
): Promise<PartitionView> {
  try {
    return await db.transaction(async (tx) => {
      const computer = await loadComputer(tx, computerId);
      authorize(actor, computer, "manage");
      const [partition] = await tx
        .select()
        .from(partitions)
        .where(and(eq(partitions.computerId, computerId), eq(partitions.reference, reference)))
        .for("update");
      if (!partition) {
        throw notFound(
          `computer ${computerId} has no partition ${reference}: format creates partitions ('slap node format', or partitionCount on the Computer)`,
        );
      }
      const extras = withSettings(partition.extras, settings);
      if (sameExtras(extras, partition.extras)) return viewPartition(partition);
      if (extras.routableIpv4 && extras.routableIpv4 !== partition.extras.routableIpv4) {
        await assertRoutableIpv4Free(tx, extras.routableIpv4);
      }
      const [updated] = await tx
        .update(partitions)
        .set({ extras })
        .where(eq(partitions.id, partition.id))
        .returning();
      // The instance there is redeployed: its buildout is given the extras.
      if (partition.instanceId) await bumpInstances(tx, [partition.instanceId]);
      else await bumpComputers(tx, [computerId]);
      return viewPartition(updated ?? partition);
    });
  } catch (error) {
    // Two requests for the same address at once: the unique index lets only one through.
    if (isUniqueViolation(error) && settings.routableIpv4) {
      throw routableIpv4Taken(settings.routableIpv4, "another partition");
    }
    throw error;
  }
}

function withSettings(current: PartitionExtras, settings: PartitionSettings): PartitionExtras {
  const extras: PartitionExtras = { ...current };
  for (const key of ["routableIpv4", "blockDevice"] as const) {
    const value = settings[key];
    if (value === null) delete extras[key];
    else if (value !== undefined) extras[key] = value;
  }
  return extras;
}

function sameExtras(a: PartitionExtras, b: PartitionExtras): boolean {
  return a.routableIpv4 === b.routableIpv4 && a.blockDevice === b.blockDevice;
}

async function assertRoutableIpv4Free(executor: Executor, address: string): Promise<void> {
  const [holder] = await executor
    .select({ computerId: partitions.computerId, reference: partitions.reference })
    .from(partitions)
    .where(sql`${partitions.extras} ->> 'routableIpv4' = ${address}`);
  if (holder)
    throw routableIpv4Taken(address, `partition ${holder.reference} of computer ${holder.computerId}`);
}

function routableIpv4Taken(address: string, holder: string) {
  return conflict(
    `routable IPv4 ${address} is already set on ${holder}: clear it there first, or choose another`,
  );
}

/** Postgres refused a row that a unique index forbids (error 23505), however the driver wraps it. */
function isUniqueViolation(error: unknown): boolean {
  for (let cause = error; cause instanceof Error; cause = cause.cause) {
    if ((cause as { code?: unknown }).code === "23505") return true;
  }
  return false;
}

export async function updateComputer(
  db: Db,
  actor: Actor,
  id: string,
  settings: ComputerSettings,
): Promise<ComputerView> {
  const computer = await loadComputer(db, id);
  authorize(actor, computer, "manage");
  if (settings.pricePerPartitionHour !== undefined && settings.pricePerPartitionHour < 0) {
    throw invalid("pricePerPartitionHour", "a price cannot be negative");
  }
  if (settings.allocationScope !== undefined && !SCOPES.includes(settings.allocationScope)) {
    throw invalid("allocationScope", `allocationScope must be one of ${SCOPES.join(", ")}`);
  }
  const changes = {
    ...(settings.title !== undefined ? { title: settings.title } : {}),
    ...(settings.region !== undefined ? { region: settings.region } : {}),
    ...(settings.capabilities !== undefined ? { capabilities: settings.capabilities } : {}),
    ...(settings.pricePerPartitionHour !== undefined
      ? { pricePerPartitionHour: settings.pricePerPartitionHour }
      : {}),
    ...(settings.allocationScope !== undefined ? { allocationScope: settings.allocationScope } : {}),
  };
  if (Object.keys(changes).length === 0) return viewOne(db, computer);
  return db.transaction(async (tx) => {
    const [updated] = await tx.update(computers).set(changes).where(eq(computers.id, id)).returning();
    // A wider scope, another region or price may let waiting requests in: they are placed now,
    // not when a partition happens to free up.
    await placeWaiting(tx, [id]);
    return viewOne(tx, updated ?? computer);
  });
}

/**
 * Retires a computer for good: its certificates are revoked, its unused registration tokens
 * expire, it takes no more instances, and its id cannot be registered again. Refused while any
 * of its partitions holds an instance: destroy them first, or rebuild the computer on another
 * host instead.
 */
export async function deregisterComputer(db: Db, actor: Actor, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const [computer] = await tx.select().from(computers).where(eq(computers.id, id)).for("update");
    if (!computer || computer.deregisteredAt) throw notFound(`no computer ${id}`);
    authorize(actor, computer, "manage");
    const busy = await tx
      .select({ reference: partitions.reference })
      .from(partitions)
      .where(and(eq(partitions.computerId, id), sql`${partitions.instanceId} is not null`));
    if (busy.length > 0) {
      throw conflict(
        `computer ${id} still hosts instances (${busy.map((row) => row.reference).join(", ")}): destroy them first, or rebuild the computer on another host`,
      );
    }
    const now = new Date();
    await revokeCertificates(tx, "computer", id);
    await tx.update(computers).set({ deregisteredAt: now }).where(eq(computers.id, id));
    // Re-registration tokens die with the computer: one handed out earlier must not bring it back.
    await expireTokens(tx, { computerId: id });
    // Wakes the node's long poll, which then learns that the computer is gone.
    await bumpComputers(tx, [id]);
  });
}

export async function getComputer(db: Db, actor: Actor, id: string): Promise<ComputerView> {
  const computer = await loadComputer(db, id);
  authorize(actor, computer, "read");
  return viewOne(db, computer);
}

/** The computers a person owns (all of them for an admin). */
export async function listComputers(db: Db, actor: Actor): Promise<ComputerView[]> {
  if (actor.kind !== "person") throw forbidden(`${actor.kind} ${actor.id} may not list computers`);
  const active = isNull(computers.deregisteredAt);
  const rows = await db
    .select()
    .from(computers)
    .where(actor.isAdmin ? active : and(active, eq(computers.ownerId, actor.id)))
    .orderBy(asc(computers.createdAt));
  return viewComputers(db, rows);
}

/**
 * "Something broke on this node, reprocess everything" (SlapOS's computerBang): every instance it
 * runs is redeployed. The computer itself, its owner or an admin.
 */
export async function bangComputer(db: Db, actor: Actor, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    authorize(actor, await loadComputer(tx, id), "bang");
    const hosted = await tx
      .select({ instanceId: partitions.instanceId })
      .from(partitions)
      .where(and(eq(partitions.computerId, id), sql`${partitions.instanceId} is not null`));
    await bumpInstances(
      tx,
      hosted.map((row) => row.instanceId).filter((instanceId): instanceId is string => instanceId !== null),
    );
  });
}

/** Checks that the actor is this computer (or an admin) and records that the node was heard from. */
export async function touchComputer(executor: Executor, actor: Actor, id: string): Promise<ComputerRow> {
  const computer = await loadComputer(executor, id);
  authorize(actor, computer, "node");
  await recordContact(executor, computer);
  return computer;
}

/** Only the computer itself (or an admin) acts as that computer's node. */
export function authorizeNode(actor: Actor, computer: Pick<ComputerRow, "id" | "ownerId">): void {
  authorize(actor, computer as ComputerRow, "node");
}

/**
 * Records that a node was heard from, to within CONTACT_RESOLUTION_MS: nodes poll often, and a
 * write on every poll would make concurrent pollers of one computer queue on its row.
 */
export async function recordContact(
  executor: Executor,
  computer: Pick<ComputerRow, "id" | "lastContactAt">,
): Promise<void> {
  if (computer.lastContactAt && Date.now() - computer.lastContactAt.getTime() < CONTACT_RESOLUTION_MS) return;
  await executor.update(computers).set({ lastContactAt: sql`now()` }).where(eq(computers.id, computer.id));
}

const CONTACT_RESOLUTION_MS = 10_000;

/**
 * Makes sure a computer with this id exists, creating it for an admin (the SLAP API's
 * `loadComputerConfigurationFromXML` names the computer itself, as with slapproxy).
 */
export async function ensureComputer(db: Db, actor: Actor, id: string): Promise<void> {
  const [existing] = await db.select({ id: computers.id }).from(computers).where(eq(computers.id, id));
  if (existing) return;
  if (actor.kind !== "person" || !actor.isAdmin) throw notFound(`no computer ${id}: register it first`);
  await db.insert(computers).values({ id, title: id, ownerId: actor.id }).onConflictDoNothing();
}
