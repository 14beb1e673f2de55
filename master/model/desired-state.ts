import { sql } from "drizzle-orm";
import { type Db, type Rows, rowsOf } from "../db/connect.js";
import type { PartitionAddress, PartitionExtras } from "../db/schema.js";
import type { Actor } from "./actor.js";
import { authorizeNode, recordContact } from "./computers.js";
import { forbidden, notFound } from "./errors.js";
import type { RequestedState } from "./instances.js";

export interface SharedInstanceState {
  id: string;
  title: string;
  softwareType: string;
  parameters: Record<string, string>;
}

export interface PartitionInstanceState {
  id: string;
  title: string;
  /** The title of the root of its tree (its own for a root). */
  rootTitle: string;
  softwareReleaseUrl: string;
  softwareType: string;
  parameters: Record<string, string>;
  requestedState: RequestedState;
  /** Changes exactly when the node must redeploy. */
  timestamp: number;
  connectionParameters: Record<string, string>;
  sharedInstances: SharedInstanceState[];
}

export interface DesiredState {
  computerId: string;
  /** Increases with every change; a node long-polls for a version above the one it has. */
  version: number;
  software: { url: string; requestedState: "available" | "destroyed" }[];
  partitions: {
    reference: string;
    addresses: PartitionAddress[];
    tap: string | null;
    extras: PartitionExtras;
    instance: PartitionInstanceState | null;
  }[];
}

interface ComputerHead extends Record<string, unknown> {
  owner_id: string;
  deregistered_at: string | null;
  last_contact_at: string | null;
  version: number | string;
}

/** The desired state as the JSON text the API sends, with its version. */
export interface DesiredStateDocument {
  version: number;
  json: string;
}

/**
 * Builds a computer's desired state document: Postgres renders the whole JSON in one statement,
 * so content and version come from one snapshot.
 */
async function buildDocument(db: Db, computerId: string): Promise<DesiredStateDocument> {
  const result = await db.execute<{ version: number | string; document: string }>(sql`
    select c.desired_version as version,
      json_build_object(
        'computerId', c.id,
        'version', c.desired_version,
        'software', coalesce((
          select json_agg(json_build_object('url', s.url, 'requestedState', s.requested_state) order by s.url)
          from software_installations s where s.computer_id = c.id), '[]'),
        'partitions', coalesce((
          select json_agg(json_build_object(
            'reference', p.reference, 'addresses', p.addresses, 'tap', p.tap, 'extras', p.extras,
            'instance', case when i.id is null then null else json_build_object(
              'id', i.id, 'title', i.title,
              'rootTitle', (select r.title from software_instances r where r.id = i.root_id),
              'softwareReleaseUrl', i.software_release_url,
              'softwareType', i.software_type, 'parameters', i.parameters, 'requestedState', i.requested_state,
              'timestamp', i.timestamp, 'connectionParameters', i.connection_parameters,
              'sharedInstances', coalesce((
                select json_agg(json_build_object('id', h.id, 'title', h.title, 'softwareType', h.software_type,
                                                  'parameters', h.parameters) order by h.created_at, h.id)
                from software_instances h where h.host_instance_id = i.id and h.destroyed_at is null), '[]')
            ) end) order by p.id)
          from partitions p left join software_instances i on i.id = p.instance_id
          where p.computer_id = c.id), '[]')
      )::text as document
    from computers c where c.id = ${computerId}`);
  const [row] = rowsOf(result as Rows<{ version: number | string; document: string }>);
  if (!row) throw notFound(`no computer ${computerId}`);
  return { version: Number(row.version), json: row.document };
}

/** How many computers' documents one master process keeps. */
const CACHE_SIZE = 10_000;

/**
 * The desired states of computers, as nodes read them: constantly, while they rarely change. One
 * per master process. A read costs one indexed lookup of the computer's version; the document is
 * rebuilt only when that version moved (every change bumps it in its own transaction, so a
 * cached document is never stale, whichever master made the change). Long polls wait here for
 * the database's change notifications.
 */
export class DesiredStates {
  private readonly documents = new Map<string, DesiredStateDocument>();
  private readonly waiters = new Map<string, Set<(fresh: Promise<Snapshot>) => void>>();

  constructor(private readonly db: Db) {}

  /**
   * Called for each committed change notification: one fresh read, started after the commit,
   * answers every node waiting on that computer (not one read per node).
   */
  notify(computerId: string): void {
    const waiting = this.waiters.get(computerId);
    if (!waiting) return;
    this.waiters.delete(computerId);
    const fresh = this.snapshot(computerId);
    fresh.catch(() => {}); // each waiter sees the failure through its own await
    for (const wake of waiting) wake(fresh);
  }

  /**
   * What the computer must install and run, for the computer itself (or an admin); an instance
   * running there sees its own partition and release only.
   */
  async read(actor: Actor, computerId: string): Promise<DesiredStateDocument> {
    return this.documentFor(actor, computerId, await this.snapshot(computerId));
  }

  private async documentFor(
    actor: Actor,
    computerId: string,
    { head, document }: Snapshot,
  ): Promise<DesiredStateDocument> {
    if (actor.kind === "instance") return instanceSlice(actor.id, document);
    authorizeNode(actor, { id: computerId, ownerId: head.owner_id });
    await recordContact(this.db, {
      id: computerId,
      lastContactAt: head.last_contact_at ? new Date(head.last_contact_at) : null,
    });
    return document;
  }

  /**
   * Returns the desired state as soon as its version exceeds `afterVersion`, or the current one
   * after `timeoutMs` (or when `signal` aborts, e.g. the client went away).
   */
  async wait(
    actor: Actor,
    computerId: string,
    afterVersion: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<DesiredStateDocument> {
    // Registered before reading, so a change committed in between is not missed.
    let wake: (fresh: Promise<Snapshot>) => void = () => {};
    const changed = new Promise<Promise<Snapshot>>((resolve) => {
      wake = resolve;
    });
    const waiting = this.waiters.get(computerId) ?? new Set();
    waiting.add(wake);
    this.waiters.set(computerId, waiting);
    try {
      const current = await this.read(actor, computerId);
      if (current.version > afterVersion || timeoutMs <= 0) return current;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs);
        signal?.addEventListener("abort", () => resolve(undefined), { once: true });
      });
      const fresh = await Promise.race([changed, timedOut]);
      clearTimeout(timer);
      if (!fresh) return await this.read(actor, computerId);
      return await this.documentFor(actor, computerId, await fresh);
    } finally {
      this.waiters.get(computerId)?.delete(wake);
      if (this.waiters.get(computerId)?.size === 0) this.waiters.delete(computerId);
    }
  }

  /** The computer's head row and its document, rebuilt only when the version moved. */
  private async snapshot(computerId: string): Promise<Snapshot> {
    const [head] = rowsOf(
      (await this.db.execute<ComputerHead>(sql`
        select owner_id, deregistered_at, last_contact_at, desired_version as version
        from computers where id = ${computerId}`)) as Rows<ComputerHead>,
    );
    if (!head || head.deregistered_at) throw notFound(`no computer ${computerId}`);
    const cached = this.documents.get(computerId);
    if (cached && cached.version === Number(head.version)) return { head, document: cached };
    const built = await buildDocument(this.db, computerId);
    this.documents.delete(computerId); // re-inserted last: the Map's order is the eviction order
    this.documents.set(computerId, built);
    if (this.documents.size > CACHE_SIZE) {
      const oldest = this.documents.keys().next().value;
      if (oldest !== undefined) this.documents.delete(oldest);
    }
    return { head, document: built };
  }
}

interface Snapshot {
  head: ComputerHead;
  document: DesiredStateDocument;
}

/** The part of a computer's desired state an instance running there may see: its own. */
function instanceSlice(instanceId: string, document: DesiredStateDocument): DesiredStateDocument {
  const state = JSON.parse(document.json) as DesiredState;
  const own = state.partitions.find((partition) => partition.instance?.id === instanceId);
  if (!own?.instance) {
    throw forbidden(`instance ${instanceId} does not run on computer ${state.computerId}`);
  }
  const release = own.instance.softwareReleaseUrl;
  const slice: DesiredState = {
    ...state,
    software: state.software.filter((software) => software.url === release),
    partitions: [own],
  };
  return { version: document.version, json: JSON.stringify(slice) };
}

/** The desired state as an object, uncached (for callers inside the master and tests). */
export async function readDesiredState(db: Db, actor: Actor, computerId: string): Promise<DesiredState> {
  return JSON.parse((await new DesiredStates(db).read(actor, computerId)).json) as DesiredState;
}
