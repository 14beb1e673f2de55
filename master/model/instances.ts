import { and, eq, inArray, isNull, ne, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/connect.js";
import {
  computers,
  contracts,
  type PartitionAddress,
  partitions,
  type Scope,
  softwareInstances,
} from "../db/schema.js";
import { type Actor, describeActor } from "./actor.js";
import { allocatePartition } from "./allocation.js";
import { revokeCertificates } from "./certificates.js";
import { bumpComputers, bumpInstances, nextTimestamp } from "./changes.js";
import { conflict, forbidden, invalid, notFound } from "./errors.js";
import { newId } from "./ids.js";
import { placeWaiting } from "./placement.js";
import { computerConsent, scopeAdmits, whomScopeAdmits } from "./scope.js";
import { parseSla } from "./sla.js";

export type RequestedState = "started" | "stopped" | "destroyed";
export type ReportedState = "started" | "stopped" | "destroyed" | "error";
export type InstanceRow = typeof softwareInstances.$inferSelect;

export interface InstanceRequest {
  title: string;
  softwareReleaseUrl: string;
  softwareType?: string;
  parameters?: Record<string, string>;
  sla?: Record<string, string>;
  shared?: boolean;
  /** Absent: keep the current state (`started` for a new instance). */
  state?: RequestedState;
  /** Whose shared instances it serves; absent: keep the current scope (`personal` for a new instance). */
  sharingScope?: Scope;
}

export type InstanceStatus = "pending" | "deploying" | "ready" | "error" | "destroying" | "destroyed";

export interface InstanceView {
  id: string;
  title: string;
  softwareReleaseUrl: string;
  softwareType: string;
  parameters: Record<string, string>;
  sla: Record<string, string>;
  shared: boolean;
  sharingScope: Scope;
  requestedState: RequestedState;
  reportedState: ReportedState | null;
  status: InstanceStatus;
  errorLog: string | null;
  connectionParameters: Record<string, string>;
  computerId: string | null;
  partitionReference: string | null;
  ipList: string[];
  /** The partition's addresses with their interfaces. */
  addresses: PartitionAddress[];
  hostInstanceId: string | null;
  parentId: string | null;
  rootId: string;
  ownerId: string;
  timestamp: number;
  /** The version the last report was about; the report says nothing about a newer one. */
  reportedTimestamp: number | null;
  createdAt: string;
  destroyedAt: string | null;
}

/**
 * What a requester should think of the instance. A report counts only for the version it was
 * about: after a new request (a new timestamp), the instance is deploying until the node reports
 * on that version, so nobody takes the old connection parameters or the old error for the new ones.
 * A shared instance's "report" is its host publishing its connection parameters.
 */
function statusOf(row: InstanceRow, hasPlace: boolean): InstanceStatus {
  if (row.destroyedAt) return "destroyed";
  if (row.requestedState === "destroyed") return "destroying";
  if (!hasPlace) return "pending";
  if (row.reportedTimestamp !== row.timestamp) return "deploying";
  if (row.reportedState === "error") return "error";
  if (row.shared) return Object.keys(row.connectionParameters).length > 0 ? "ready" : "deploying";
  return row.reportedState === row.requestedState ? "ready" : "deploying";
}

/** Instances with their partition (their host's, for shared instances), in the API's shape. */
export async function viewInstances(executor: Executor, rows: InstanceRow[]): Promise<InstanceView[]> {
  const placeIds = [
    ...new Set(rows.map((row) => (row.shared ? row.hostInstanceId : row.id)).filter(isString)),
  ];
  const places =
    placeIds.length === 0
      ? []
      : await executor.select().from(partitions).where(inArray(partitions.instanceId, placeIds));
  const placeOf = new Map(places.map((partition) => [partition.instanceId, partition]));
  return rows.map((row) => {
    const partition = placeOf.get(row.shared ? row.hostInstanceId : row.id);
    return {
      id: row.id,
      title: row.title,
      softwareReleaseUrl: row.softwareReleaseUrl,
      softwareType: row.softwareType,
      parameters: row.parameters,
      sla: row.sla,
      shared: row.shared,
      sharingScope: row.sharingScope,
      requestedState: row.requestedState,
      reportedState: row.reportedState,
      status: statusOf(row, row.shared ? Boolean(row.hostInstanceId) : Boolean(partition)),
      errorLog: row.errorLog,
      connectionParameters: row.connectionParameters,
      computerId: partition?.computerId ?? null,
      partitionReference: partition?.reference ?? null,
      ipList: partition?.addresses.map((address) => address.address) ?? [],
      addresses: partition?.addresses ?? [],
      hostInstanceId: row.hostInstanceId,
      parentId: row.parentId,
      rootId: row.rootId,
      ownerId: row.ownerId,
      timestamp: row.timestamp,
      reportedTimestamp: row.reportedTimestamp,
      createdAt: row.createdAt.toISOString(),
      destroyedAt: row.destroyedAt?.toISOString() ?? null,
    };
  });
}

function isString(value: string | null): value is string {
  return typeof value === "string";
}

async function viewOne(executor: Executor, row: InstanceRow): Promise<InstanceView> {
  const [view] = await viewInstances(executor, [row]);
  if (!view) throw new Error("unreachable: a view for every row");
  return view;
}

async function loadInstance(executor: Executor, id: string, lock = false): Promise<InstanceRow> {
  const query = executor.select().from(softwareInstances).where(eq(softwareInstances.id, id));
  const [row] = lock ? await query.for("update") : await query;
  if (!row) throw notFound(`no software instance ${id}`);
  return row;
}

/** The computer whose partition runs this instance (its host's, for a shared one). */
async function computerOf(executor: Executor, row: InstanceRow): Promise<string | undefined> {
  const placeId = row.shared ? row.hostInstanceId : row.id;
  if (!placeId) return undefined;
  const [partition] = await executor
    .select({ computerId: partitions.computerId })
    .from(partitions)
    .where(eq(partitions.instanceId, placeId));
  return partition?.computerId;
}

/**
 * What one may do to an instance. `read` and `bang`: its owner, its tree, its node. `publish`
 * (connection parameters): the instance, its node, the host of a shared instance. `report`
 * (deployed state, destruction): its node. `request` (a child inside its tree): the instance.
 * Admins may do everything. Every door (JSON, SLAP) asks this one function.
 */
export type InstanceAccess = "read" | "publish" | "report" | "bang" | "request";

const OWNER_ACCESS: ReadonlySet<InstanceAccess> = new Set(["read", "bang"]);

async function authorize(
  executor: Executor,
  actor: Actor,
  row: InstanceRow,
  access: InstanceAccess,
): Promise<void> {
  if (actor.kind === "person") {
    if (actor.isAdmin || (row.ownerId === actor.id && OWNER_ACCESS.has(access))) return;
    if (row.ownerId === actor.id) {
      throw forbidden(
        `person ${actor.id} may not ${access} instance ${row.id}: only ${access === "request" ? "the instance itself requests inside its tree (request a root instance instead)" : "its node or the instance itself does"}`,
      );
    }
    throw forbidden(`person ${actor.id} may not ${access} instance ${row.id}: it belongs to someone else`);
  }
  if (actor.kind === "instance") {
    if (actor.id === row.id && access !== "report") return;
    if (access === "read" || access === "bang") {
      const self = await loadInstance(executor, actor.id);
      if (self.rootId === row.rootId) return;
    }
    if (access === "publish" && row.shared && row.hostInstanceId === actor.id) return;
    throw forbidden(`instance ${actor.id} may not ${access} instance ${row.id}: not in its own tree`);
  }
  if (access === "request") throw forbidden(`computer ${actor.id} may not request instances`);
  if ((await computerOf(executor, row)) === actor.id) return;
  throw forbidden(`computer ${actor.id} may not ${access} instance ${row.id}: it does not run there`);
}

/** Checks that the actor may act on the instance this way (for acts that change nothing else). */
export async function authorizeInstance(
  db: Db,
  actor: Actor,
  id: string,
  access: InstanceAccess,
): Promise<void> {
  await authorize(db, actor, await loadInstance(db, id), access);
}

/**
 * The instance living in a partition, for a caller that names the partition instead of the
 * instance (the SLAP API). Someone with no business there learns nothing about the partition
 * (403, not whether it is free): the computer itself, its owner and admins, or whoever may read
 * the instance there. What the caller may then do to that instance is the act's own check.
 */
export async function instanceInPartition(
  db: Db,
  actor: Actor,
  computerId: string,
  reference: string,
): Promise<string | undefined> {
  const [row] = await db
    .select({ partitionId: partitions.id, instanceId: partitions.instanceId, ownerId: computers.ownerId })
    .from(computers)
    .leftJoin(partitions, and(eq(partitions.computerId, computers.id), eq(partitions.reference, reference)))
    .where(eq(computers.id, computerId));
  const computerSide =
    (actor.kind === "person" && (actor.isAdmin || actor.id === row?.ownerId)) ||
    (actor.kind === "computer" && actor.id === computerId);
  const refused = () =>
    forbidden(`${describeActor(actor)} may not act on partition ${reference} of computer ${computerId}`);
  if (!row || row.partitionId === null) {
    if (!computerSide) throw refused();
    throw notFound(
      row ? `computer ${computerId} has no partition ${reference}` : `no computer ${computerId}`,
    );
  }
  if (row.instanceId === null) {
    if (computerSide) return undefined;
    throw refused();
  }
  if (!computerSide) {
    try {
      await authorize(db, actor, await loadInstance(db, row.instanceId), "read");
    } catch {
      throw refused();
    }
  }
  return row.instanceId;
}

/**
 * Requests an instance, SlapOS style: the title identifies it within the requester's scope (a
 * person's roots, or an instance's tree), so a re-request with the same title updates it and
 * is cheap when nothing changed. Any change a node must act on bumps the timestamp.
 */
export async function requestInstance(
  db: Db,
  actor: Actor,
  request: InstanceRequest,
  options: {
    /** The instance whose tree the new one joins; default: the caller's own (for an instance). */
    parentId?: string;
  } = {},
): Promise<InstanceView> {
  if (actor.kind === "computer")
    throw forbidden(
      `computer ${actor.id} may not request instances: the instance itself does, with its own certificate`,
    );
  if (request.title.trim() === "") throw invalid("title", "an instance needs a non-empty title");
  if (request.softwareReleaseUrl.trim() === "")
    throw invalid("softwareReleaseUrl", "an instance needs a software release URL");
  const sla = parseSla(request.sla ?? {});
  const shared = request.shared ?? false;
  const softwareType = request.softwareType || "default";

  return db.transaction(async (tx) => {
    let scope: string;
    let ownerId: string;
    let parent: InstanceRow | undefined;
    const parentId = options.parentId ?? (actor.kind === "instance" ? actor.id : undefined);
    if (parentId === undefined) {
      scope = `person:${actor.id}`;
      ownerId = actor.id;
    } else {
      parent = await loadInstance(tx, parentId);
      await authorize(tx, actor, parent, "request");
      if (parent.destroyedAt || parent.requestedState === "destroyed")
        throw conflict(`instance ${parent.id} is being destroyed and may not request instances`);
      scope = `tree:${parent.rootId}`;
      ownerId = parent.ownerId;
    }
    if (sla.computerGuid)
      await assertComputerAdmits(tx, sla.computerGuid, {
        requesterId: ownerId,
        scope,
        title: request.title,
        state: request.state,
      });

    const id = newId("SOFTINST");
    const inserted = await tx
      .insert(softwareInstances)
      .values({
        id,
        title: request.title,
        scope,
        softwareReleaseUrl: request.softwareReleaseUrl,
        softwareType,
        parameters: request.parameters ?? {},
        sla: request.sla ?? {},
        shared,
        sharingScope: request.sharingScope ?? "personal",
        requestedState: request.state ?? "started",
        ownerId,
        parentId: parent?.id ?? null,
        rootId: parent?.rootId ?? id,
        timestamp: Date.now(),
      })
      .onConflictDoNothing({ target: [softwareInstances.scope, softwareInstances.title] })
      .returning();

    let row = inserted[0];
    if (row) {
      if (row.requestedState === "destroyed") {
        throw notFound(`no instance titled '${request.title}' to destroy`);
      }
    } else {
      const [existing] = await tx
        .select()
        .from(softwareInstances)
        .where(and(eq(softwareInstances.scope, scope), eq(softwareInstances.title, request.title)))
        .for("update");
      if (!existing) throw new Error(`instance '${request.title}' vanished during its request`);
      row = await updateRequested(tx, existing, { ...request, softwareType, shared }, parent);
    }

    if (!row.destroyedAt && row.requestedState !== "destroyed") {
      if (row.shared && !row.hostInstanceId)
        row = await attachToHost(tx, row, sla.instanceGuid, sla.computerGuid);
      else if (!row.shared && row.partitionId === null) {
        const allocation = await allocatePartition(tx, {
          instanceId: row.id,
          softwareReleaseUrl: row.softwareReleaseUrl,
          sla,
          conditions: row.sla,
          requesterId: row.ownerId,
        });
        if (allocation) row = { ...row, partitionId: allocation.partitionId };
      }
    }
    return viewOne(tx, row);
  });
}

async function updateRequested(
  tx: Executor,
  existing: InstanceRow,
  request: InstanceRequest & { softwareType: string; shared: boolean },
  parent: InstanceRow | undefined,
): Promise<InstanceRow> {
  if (existing.shared !== request.shared) {
    throw conflict(
      `instance '${existing.title}' is ${existing.shared ? "shared" : "not shared"}; destroy it before requesting it ${request.shared ? "shared" : "not shared"}`,
    );
  }
  if (existing.softwareReleaseUrl !== request.softwareReleaseUrl && existing.partitionId !== null) {
    await assertReleaseChangeAdmitted(tx, existing);
  }
  let state = request.state ?? existing.requestedState;
  // A tree follows its root: a child of a stopped or destroyed root cannot be started.
  if (parent) {
    const root = parent.id === existing.rootId ? parent : await loadInstance(tx, existing.rootId);
    if (root.requestedState !== "started" && state === "started") state = root.requestedState;
  }
  const changed =
    existing.softwareReleaseUrl !== request.softwareReleaseUrl ||
    existing.softwareType !== request.softwareType ||
    state !== existing.requestedState ||
    (request.parameters !== undefined && !sameRecord(existing.parameters, request.parameters));
  const slaChanged = request.sla !== undefined && !sameRecord(existing.sla, request.sla);
  const sharingChanged = request.sharingScope !== undefined && request.sharingScope !== existing.sharingScope;
  if (!changed && !slaChanged && !sharingChanged) return existing;

  const [updated] = await tx
    .update(softwareInstances)
    .set({
      softwareReleaseUrl: request.softwareReleaseUrl,
      softwareType: request.softwareType,
      parameters: request.parameters ?? existing.parameters,
      sla: request.sla ?? existing.sla,
      sharingScope: request.sharingScope ?? existing.sharingScope,
      requestedState: state,
      ...(changed ? { timestamp: nextTimestamp } : {}),
    })
    .where(eq(softwareInstances.id, existing.id))
    .returning();
  if (!updated) throw new Error(`instance ${existing.id} vanished during its update`);
  if (!changed) return updated;

  const computerId = await computerOf(tx, updated);
  if (computerId) await bumpComputers(tx, [computerId]);
  if (updated.shared && updated.hostInstanceId) {
    await bumpInstances(tx, [updated.hostInstanceId]); // the host serves its shared instances' parameters
    if (state === "destroyed") await finishSharedDestruction(tx, updated);
  }
  if (!updated.shared && updated.id === updated.rootId && state !== existing.requestedState) {
    await propagateTreeState(tx, updated.id, state);
  }
  return (
    (await tx.select().from(softwareInstances).where(eq(softwareInstances.id, updated.id)))[0] ?? updated
  );
}

/** A root's new state reaches every instance of its tree (stop and destroy go down the tree). */
async function propagateTreeState(tx: Executor, rootId: string, state: RequestedState): Promise<void> {
  const members = await tx
    .update(softwareInstances)
    .set({ requestedState: state, timestamp: nextTimestamp })
    .where(
      and(
        eq(softwareInstances.rootId, rootId),
        ne(softwareInstances.id, rootId),
        isNull(softwareInstances.destroyedAt),
        ne(softwareInstances.requestedState, state),
      ),
    )
    .returning();
  await bumpInstances(
    tx,
    members.map((member) => member.hostInstanceId ?? member.id),
  );
  for (const member of members)
    if (member.shared && state === "destroyed") await finishSharedDestruction(tx, member);
}

function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return (
    keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && a[key] === b[key])
  );
}

/**
 * Attaches a shared instance to a busy partition hosting the same release and software type,
 * where both consent: the host instance's sharing scope and its computer's allocation scope
 * admit the shared instance's owner.
 */
async function attachToHost(
  tx: Executor,
  row: InstanceRow,
  instanceGuid: string | undefined,
  computerGuid: string | undefined,
): Promise<InstanceRow> {
  const consenting = [
    scopeAdmits(sql`${softwareInstances.sharingScope}`, sql`${softwareInstances.ownerId}`, row.ownerId),
    scopeAdmits(sql`${computers.allocationScope}`, sql`${computers.ownerId}`, row.ownerId),
  ];
  const conditions = [
    eq(softwareInstances.softwareReleaseUrl, row.softwareReleaseUrl),
    eq(softwareInstances.softwareType, row.softwareType),
    eq(softwareInstances.shared, false),
    eq(softwareInstances.requestedState, "started"),
    isNull(softwareInstances.destroyedAt),
    eq(partitions.state, "busy"),
  ];
  if (instanceGuid) conditions.push(eq(softwareInstances.id, instanceGuid));
  if (computerGuid) conditions.push(eq(partitions.computerId, computerGuid));
  const [host] = await tx
    .select({ id: softwareInstances.id })
    .from(softwareInstances)
    .innerJoin(partitions, eq(partitions.instanceId, softwareInstances.id))
    .innerJoin(computers, eq(computers.id, partitions.computerId))
    .where(and(...conditions, ...consenting))
    .orderBy(softwareInstances.createdAt)
    .limit(1);
  if (!host) {
    if (instanceGuid) await assertHostConsents(tx, instanceGuid, row.ownerId);
    return row;
  }
  const [attached] = await tx
    .update(softwareInstances)
    .set({ hostInstanceId: host.id })
    .where(eq(softwareInstances.id, row.id))
    .returning();
  await bumpInstances(tx, [host.id]);
  return attached ?? row;
}

/**
 * A shared request naming its host is refused outright when the host, or its computer, does not
 * take others' shared instances: waiting would never end. (A host that consents but is not
 * running yet is waited for.)
 */
async function assertHostConsents(tx: Executor, hostId: string, requesterId: string): Promise<void> {
  const [host] = await tx
    .select({
      sharingScope: softwareInstances.sharingScope,
      admits: sql<boolean>`${scopeAdmits(sql`${softwareInstances.sharingScope}`, sql`${softwareInstances.ownerId}`, requesterId)}`,
      computerId: partitions.computerId,
    })
    .from(softwareInstances)
    .leftJoin(partitions, eq(partitions.instanceId, softwareInstances.id))
    .where(eq(softwareInstances.id, hostId));
  if (!host) throw invalid("sla.instance_guid", `no instance ${hostId} to host this shared instance`);
  if (!host.admits) {
    throw forbidden(
      `instance ${hostId} serves shared instances of ${whomScopeAdmits(host.sharingScope)} (sharing scope ${host.sharingScope}): its owner may widen it with sharingScope`,
    );
  }
  const computer = host.computerId ? await computerConsent(tx, host.computerId, requesterId) : undefined;
  if (computer && !computer.admits) {
    throw forbidden(
      `computer ${host.computerId}, where instance ${hostId} runs, takes requests from ${whomScopeAdmits(computer.allocationScope)} (allocation scope ${computer.allocationScope})`,
    );
  }
}

/**
 * Another release on a computer is other code for its owner to consent to: an instance may change
 * its release only while the computer's scope still admits the instance's owner (what already
 * runs there keeps running, and its owner may still update its parameters or destroy it).
 */
async function assertReleaseChangeAdmitted(tx: Executor, row: InstanceRow): Promise<void> {
  const computerId = await computerOf(tx, row);
  const computer = computerId ? await computerConsent(tx, computerId, row.ownerId) : undefined;
  if (computer && !computer.admits) {
    throw forbidden(
      `computer ${computerId} no longer admits person ${row.ownerId} (allocation scope ${computer.allocationScope}): instance '${row.title}' keeps its release there; destroy it and request it elsewhere, or ask the computer's owner to admit you again`,
    );
  }
}

/** A shared instance has no partition: once its host is told, its destruction is complete. */
async function finishSharedDestruction(tx: Executor, row: InstanceRow): Promise<void> {
  await tx
    .update(softwareInstances)
    .set({ destroyedAt: sql`now()`, scope: `destroyed:${row.id}`, reportedState: "destroyed" })
    .where(eq(softwareInstances.id, row.id));
}

export async function getInstance(db: Db, actor: Actor, id: string): Promise<InstanceView> {
  const row = await loadInstance(db, id);
  await authorize(db, actor, row, "read");
  return viewOne(db, row);
}

/** A person's instances (all of them for an admin); an instance's own tree. */
export async function listInstances(db: Db, actor: Actor): Promise<InstanceView[]> {
  let rows: InstanceRow[];
  if (actor.kind === "person") {
    rows = actor.isAdmin
      ? await db.select().from(softwareInstances).orderBy(softwareInstances.createdAt)
      : await db
          .select()
          .from(softwareInstances)
          .where(eq(softwareInstances.ownerId, actor.id))
          .orderBy(softwareInstances.createdAt);
  } else if (actor.kind === "instance") {
    const self = await loadInstance(db, actor.id);
    rows = await db
      .select()
      .from(softwareInstances)
      .where(eq(softwareInstances.rootId, self.rootId))
      .orderBy(softwareInstances.createdAt);
  } else {
    throw forbidden(`computer ${actor.id} lists its instances through its desired state`);
  }
  return viewInstances(db, rows);
}

/** Publishes connection parameters; the requester is woken to read them if they changed. */
export async function setConnectionParameters(
  db: Db,
  actor: Actor,
  id: string,
  parameters: Record<string, string>,
): Promise<InstanceView> {
  return db.transaction(async (tx) => {
    const row = await loadInstance(tx, id, true);
    await authorize(tx, actor, row, "publish");
    // A shared instance has no node report of its own: its host publishing for it is that report.
    const reportsShared = row.shared && row.reportedTimestamp !== row.timestamp;
    const same = sameRecord(row.connectionParameters, parameters);
    if (same && !reportsShared) return viewOne(tx, row);
    const [updated] = await tx
      .update(softwareInstances)
      .set({
        connectionParameters: parameters,
        ...(row.shared ? { reportedTimestamp: sql`${softwareInstances.timestamp}` } : {}),
      })
      .where(eq(softwareInstances.id, id))
      .returning();
    if (same) return viewOne(tx, updated ?? row);
    if (row.parentId) await bumpInstances(tx, [row.parentId]);
    const computerId = await computerOf(tx, row);
    if (computerId) await bumpComputers(tx, [computerId]); // its desired state shows them
    return viewOne(tx, updated ?? row);
  });
}

export interface InstanceReportDetails {
  /** The build or promise output, for an error. */
  errorLog?: string;
  /**
   * The timestamp of the version the node deployed. Absent (the SLAP API: slapos nodes send
   * none), the report is taken to be about the current version.
   */
  timestamp?: number;
}

/**
 * The node reports what it achieved for an instance (and the error log when it failed). A report
 * about another version than the current one is refused (conflict): the node deployed a version
 * that was replaced meanwhile, and reports again once it deployed the current one.
 */
export async function reportInstanceState(
  db: Db,
  actor: Actor,
  id: string,
  state: Exclude<ReportedState, "destroyed">,
  details: InstanceReportDetails = {},
): Promise<InstanceView> {
  const row = await loadInstance(db, id);
  await authorize(db, actor, row, "report");
  const { timestamp } = details;
  // One conditional statement: a request changing the timestamp between the check and the
  // write cannot slip an old report onto the new version.
  const [updated] = await db
    .update(softwareInstances)
    .set({
      reportedState: state,
      reportedAt: sql`now()`,
      reportedTimestamp: timestamp ?? sql`${softwareInstances.timestamp}`,
      errorLog: state === "error" ? (details.errorLog ?? "") : null,
    })
    .where(
      timestamp === undefined
        ? eq(softwareInstances.id, id)
        : and(eq(softwareInstances.id, id), eq(softwareInstances.timestamp, timestamp)),
    )
    .returning();
  if (updated) return viewOne(db, updated);
  const current = await loadInstance(db, id);
  if (timestamp === undefined) throw new Error(`instance ${id} vanished during its report`);
  if (timestamp < current.timestamp) {
    throw conflict(
      `stale report for instance ${id}: it is about timestamp ${timestamp}, but timestamp ${current.timestamp} was requested since; deploy that version and report it`,
    );
  }
  throw conflict(
    `report for instance ${id} names timestamp ${timestamp}, which the master never requested (the current one is ${current.timestamp}); deploy the current desired state and report it`,
  );
}

/** "Something broke, reprocess": every instance of the tree gets a new timestamp. */
export async function bangInstance(db: Db, actor: Actor, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const row = await loadInstance(tx, id);
    await authorize(tx, actor, row, "bang");
    const tree = await tx
      .select({ id: softwareInstances.id })
      .from(softwareInstances)
      .where(and(eq(softwareInstances.rootId, row.rootId), isNull(softwareInstances.destroyedAt)));
    await bumpInstances(
      tx,
      tree.map((member) => member.id),
    );
  });
}

/**
 * The node destroyed the instance's files: the partition becomes free, the contract ends, the
 * instance's certificates are revoked and its title becomes free again. A parent waits for its
 * children (as in SlapOS, destruction goes bottom-up).
 */
export async function completeDestruction(db: Db, actor: Actor, id: string): Promise<InstanceView> {
  return db.transaction(async (tx) => {
    const row = await loadInstance(tx, id, true);
    await authorize(tx, actor, row, "report");
    if (row.destroyedAt) return viewOne(tx, row);
    if (row.requestedState !== "destroyed") {
      throw conflict(
        `instance ${id} is requested ${row.requestedState}, not destroyed: its partition stays busy`,
      );
    }
    const children = await tx
      .select({ id: softwareInstances.id })
      .from(softwareInstances)
      .where(and(eq(softwareInstances.parentId, id), isNull(softwareInstances.destroyedAt)));
    if (children.length > 0) {
      throw conflict(
        `instance ${id} still has ${children.length} child instance(s) being destroyed (${children.map((child) => child.id).join(", ")}); report again once they are gone`,
      );
    }
    const [partition] = await tx
      .update(partitions)
      .set({ state: "free", instanceId: null })
      .where(eq(partitions.instanceId, id))
      .returning();
    await tx
      .update(contracts)
      .set({ endedAt: sql`now()` })
      .where(and(eq(contracts.instanceId, id), isNull(contracts.endedAt)));
    await revokeCertificates(tx, "instance", id);
    const [destroyed] = await tx
      .update(softwareInstances)
      .set({
        destroyedAt: sql`now()`,
        reportedState: "destroyed",
        partitionId: null,
        scope: `destroyed:${id}`,
      })
      .where(eq(softwareInstances.id, id))
      .returning();
    if (partition) {
      await tx
        .update(computers)
        .set({ freePartitions: sql`${computers.freePartitions} + 1` })
        .where(eq(computers.id, partition.computerId));
      await bumpComputers(tx, [partition.computerId]);
      await placeWaiting(tx, [partition.computerId]);
    }
    if (row.parentId) await bumpInstances(tx, [row.parentId]);
    return viewOne(tx, destroyed ?? row);
  });
}

/**
 * A request naming a computer (`sla.computer_guid`) fails at once, instead of waiting forever,
 * when that computer does not exist, was retired, or does not admit the requester (the person
 * owning the tree) by its allocation scope. Only a request that still needs a place is refused:
 * an instance already placed, or being destroyed, stays its owner's to update and destroy after
 * the computer's owner narrowed the scope.
 */
async function assertComputerAdmits(
  executor: Executor,
  computerId: string,
  request: { requesterId: string; scope: string; title: string; state?: RequestedState },
): Promise<void> {
  const computer = await computerConsent(executor, computerId, request.requesterId);
  if (!computer) throw invalid("sla.computer_guid", `no computer ${computerId}`);
  if (request.state === "destroyed") return;
  if (computer.deregisteredAt)
    throw invalid("sla.computer_guid", `computer ${computerId} was deregistered: choose another computer`);
  if (computer.admits) return;
  const [existing] = await executor
    .select({ partitionId: softwareInstances.partitionId, hostInstanceId: softwareInstances.hostInstanceId })
    .from(softwareInstances)
    .where(and(eq(softwareInstances.scope, request.scope), eq(softwareInstances.title, request.title)));
  if (existing && (existing.partitionId !== null || existing.hostInstanceId !== null)) return;
  throw forbidden(
    computer.allocationScope === "organisation"
      ? `computer ${computerId} takes requests from the members of its owner's organisations only (allocation scope organisation), and person ${request.requesterId} is in none of them: ask its owner to add you to one of their organisations, or request on another computer`
      : `computer ${computerId} takes requests from its owner only (allocation scope personal): ask its owner to set its allocationScope to organisation (and add you to an organisation) or open, or request on another computer`,
  );
}
