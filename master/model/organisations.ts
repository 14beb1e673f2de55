import { and, asc, eq, gt, inArray, isNull } from "drizzle-orm";
import type { Db, Executor } from "../db/connect.js";
import { computers, organisationMembers, organisations, persons } from "../db/schema.js";
import { type Actor, describeActor } from "./actor.js";
import { conflict, forbidden, invalid, notFound } from "./errors.js";
import { newId } from "./ids.js";
import { placeWaiting } from "./placement.js";

// Organisations group persons so that a computer's `organisation` allocation scope has someone to
// admit: the members of any organisation its owner belongs to. Managers add and remove members;
// admins may do anything; a member may leave; an organisation always keeps one manager.

export type OrganisationRole = (typeof organisationMembers.$inferSelect)["role"];

export interface OrganisationMemberView {
  personId: string;
  name: string;
  role: OrganisationRole;
  since: string;
}

export interface OrganisationView {
  id: string;
  title: string;
  createdAt: string;
  members: OrganisationMemberView[];
}

type OrganisationRow = typeof organisations.$inferSelect;
type PersonActor = Extract<Actor, { kind: "person" }>;

function asPerson(actor: Actor, act: string): PersonActor {
  if (actor.kind !== "person")
    throw forbidden(`${describeActor(actor)} may not ${act}: only persons belong to organisations`);
  return actor;
}

/** The organisation, locked when its membership is about to change: the last-manager rule needs it. */
async function loadOrganisation(executor: Executor, id: string, lock = false): Promise<OrganisationRow> {
  const query = executor.select().from(organisations).where(eq(organisations.id, id));
  const [row] = lock ? await query.for("update") : await query;
  if (!row) throw notFound(`no organisation ${id}`);
  return row;
}

async function membersOf(
  executor: Executor,
  organisationIds: string[],
): Promise<(OrganisationMemberView & { organisationId: string })[]> {
  if (organisationIds.length === 0) return [];
  const rows = await executor
    .select({
      organisationId: organisationMembers.organisationId,
      personId: organisationMembers.personId,
      name: persons.name,
      role: organisationMembers.role,
      since: organisationMembers.createdAt,
    })
    .from(organisationMembers)
    .innerJoin(persons, eq(persons.id, organisationMembers.personId))
    .where(inArray(organisationMembers.organisationId, organisationIds))
    .orderBy(asc(organisationMembers.createdAt), asc(organisationMembers.personId));
  return rows.map((row) => ({ ...row, since: row.since.toISOString() }));
}

async function viewOrganisations(executor: Executor, rows: OrganisationRow[]): Promise<OrganisationView[]> {
  const members = await membersOf(
    executor,
    rows.map((row) => row.id),
  );
  return rows.map((row) => ({
    id: row.id,
    title: row.title,
    createdAt: row.createdAt.toISOString(),
    members: members
      .filter((member) => member.organisationId === row.id)
      .map(({ organisationId: _, ...member }) => member),
  }));
}

async function viewOne(executor: Executor, row: OrganisationRow): Promise<OrganisationView> {
  const [view] = await viewOrganisations(executor, [row]);
  if (!view) throw new Error("unreachable: a view for every row");
  return view;
}

function roleIn(view: OrganisationView, personId: string): OrganisationRole | undefined {
  return view.members.find((member) => member.personId === personId)?.role;
}

function managersOf(view: OrganisationView): OrganisationMemberView[] {
  return view.members.filter((member) => member.role === "manager");
}

/** Managers (and admins) change who belongs; throws `forbidden` naming who may. */
function authorizeManage(actor: PersonActor, view: OrganisationView): void {
  if (actor.isAdmin) return;
  const role = roleIn(view, actor.id);
  if (role === "manager") return;
  const managers = managersOf(view)
    .map((manager) => `${manager.name} (${manager.personId})`)
    .join(", ");
  throw forbidden(
    role === "member"
      ? `person ${actor.id} is a member of organisation ${view.id}, not a manager: only its managers (${managers}) add and remove members`
      : `person ${actor.id} is not in organisation ${view.id}: only its managers add and remove members`,
  );
}

function lastManager(view: OrganisationView, personId: string): Error {
  return conflict(
    `person ${personId} is the last manager of organisation ${view.id}: make another member a manager first (role manager), so that someone can still manage it`,
  );
}

/**
 * New members widen what `organisation`-scoped computers of the organisation's members admit:
 * requests waiting for such a computer are placed now.
 */
async function placeWaitingInOrganisation(tx: Executor, organisationId: string): Promise<void> {
  const opened = await tx
    .select({ id: computers.id })
    .from(computers)
    .innerJoin(organisationMembers, eq(organisationMembers.personId, computers.ownerId))
    .where(
      and(
        eq(organisationMembers.organisationId, organisationId),
        eq(computers.allocationScope, "organisation"),
        isNull(computers.deregisteredAt),
        gt(computers.freePartitions, 0),
      ),
    );
  await placeWaiting(
    tx,
    opened.map((computer) => computer.id),
  );
}

/** Any person creates an organisation, and becomes its first manager. */
export async function createOrganisation(
  db: Db,
  actor: Actor,
  options: { title: string },
): Promise<OrganisationView> {
  const person = asPerson(actor, "create organisations");
  const title = options.title.trim();
  if (title === "") throw invalid("title", "an organisation needs a non-empty title");
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(organisations)
      .values({ id: newId("ORG"), title })
      .returning();
    if (!row) throw new Error("unreachable: an inserted organisation");
    await tx
      .insert(organisationMembers)
      .values({ organisationId: row.id, personId: person.id, role: "manager" });
    return viewOne(tx, row);
  });
}

/** The organisations the caller belongs to (all of them for an admin), with their members. */
export async function listOrganisations(db: Db, actor: Actor): Promise<OrganisationView[]> {
  const person = asPerson(actor, "list organisations");
  const rows = person.isAdmin
    ? await db.select().from(organisations).orderBy(asc(organisations.createdAt), asc(organisations.id))
    : await db
        .select({ organisation: organisations })
        .from(organisations)
        .innerJoin(organisationMembers, eq(organisationMembers.organisationId, organisations.id))
        .where(eq(organisationMembers.personId, person.id))
        .orderBy(asc(organisations.createdAt), asc(organisations.id))
        .then((joined) => joined.map((row) => row.organisation));
  return viewOrganisations(db, rows);
}

/** An organisation with its members: its members and admins read it. */
export async function getOrganisation(db: Db, actor: Actor, id: string): Promise<OrganisationView> {
  const person = asPerson(actor, "read organisations");
  const view = await viewOne(db, await loadOrganisation(db, id));
  if (!person.isAdmin && roleIn(view, person.id) === undefined)
    throw forbidden(`person ${person.id} may not read organisation ${id}: only its members and admins do`);
  return view;
}

/**
 * Adds a person to an organisation, or changes their role. Managers and admins only; the last
 * manager cannot step down to member.
 */
export async function setOrganisationMember(
  db: Db,
  actor: Actor,
  organisationId: string,
  personId: string,
  role: OrganisationRole,
): Promise<OrganisationView> {
  const person = asPerson(actor, "manage organisations");
  if (role !== "manager" && role !== "member") throw invalid("role", "role must be manager or member");
  return db.transaction(async (tx) => {
    const organisation = await loadOrganisation(tx, organisationId, true);
    const before = await viewOne(tx, organisation);
    authorizeManage(person, before);
    const [target] = await tx
      .select({ id: persons.id, revokedAt: persons.revokedAt })
      .from(persons)
      .where(eq(persons.id, personId));
    if (!target) throw notFound(`no person ${personId}`);
    if (target.revokedAt) throw conflict(`person ${personId} was revoked and cannot join organisations`);
    const current = roleIn(before, personId);
    if (current === role) return before;
    if (current === "manager" && managersOf(before).length === 1) throw lastManager(before, personId);
    await tx
      .insert(organisationMembers)
      .values({ organisationId, personId, role })
      .onConflictDoUpdate({
        target: [organisationMembers.organisationId, organisationMembers.personId],
        set: { role },
      });
    if (current === undefined) await placeWaitingInOrganisation(tx, organisationId);
    return viewOne(tx, organisation);
  });
}

/**
 * Removes a person from an organisation: managers and admins remove anyone, a member may leave.
 * The last manager cannot go. Their instances already placed stay; nothing new of theirs is
 * placed on the members' `organisation`-scoped computers.
 */
export async function removeOrganisationMember(
  db: Db,
  actor: Actor,
  organisationId: string,
  personId: string,
): Promise<void> {
  const person = asPerson(actor, "manage organisations");
  await db.transaction(async (tx) => {
    const organisation = await loadOrganisation(tx, organisationId, true);
    const before = await viewOne(tx, organisation);
    if (person.id !== personId) authorizeManage(person, before);
    const current = roleIn(before, personId);
    if (current === undefined)
      throw notFound(`person ${personId} is not a member of organisation ${organisationId}`);
    if (current === "manager" && managersOf(before).length === 1) throw lastManager(before, personId);
    await tx
      .delete(organisationMembers)
      .where(
        and(
          eq(organisationMembers.organisationId, organisationId),
          eq(organisationMembers.personId, personId),
        ),
      );
  });
}
