import type { Database } from "../../master/db/connect.js";
import { type Authority, loadOrCreateAuthority } from "../../master/identity/authority.js";
import type { Actor } from "../../master/model/actor.js";
import {
  type ComputerSettings,
  createRegistrationToken,
  registerComputer,
  updateComputer,
  uploadPartitions,
} from "../../master/model/computers.js";
import { createPerson } from "../../master/model/persons.js";

export interface Marketplace {
  authority: Authority;
  admin: Actor;
  alice: Actor;
  bob: Actor;
}

/** An authority, an admin and two persons on a fresh database. */
export async function createMarketplace(database: Database): Promise<Marketplace> {
  const authority = await loadOrCreateAuthority(database.db);
  const admin = await createPerson(database.db, authority, "bootstrap", { name: "admin", isAdmin: true });
  const adminActor: Actor = { kind: "person", id: admin.personId, isAdmin: true };
  const alice = await createPerson(database.db, authority, adminActor, { name: "alice" });
  const bob = await createPerson(database.db, authority, adminActor, { name: "bob" });
  return {
    authority,
    admin: adminActor,
    alice: { kind: "person", id: alice.personId, isAdmin: false },
    bob: { kind: "person", id: bob.personId, isAdmin: false },
  };
}

/** Registers a computer owned by `owner` with `partitionCount` partitions, as a node would. */
export async function addComputer(
  database: Database,
  market: Marketplace,
  owner: Actor,
  partitionCount: number,
  settings: ComputerSettings = {},
): Promise<{ id: string; actor: Actor }> {
  const { token } = await createRegistrationToken(database.db, owner);
  const registration = await registerComputer(database.db, market.authority, token, {
    title: settings.title,
  });
  const actor: Actor = { kind: "computer", id: registration.computerId };
  await uploadPartitions(
    database.db,
    actor,
    registration.computerId,
    Array.from({ length: partitionCount }, (_, index) => ({
      reference: `slappart${index}`,
      addresses: [{ interface: "eth0", address: `fd00::${index + 1}`, netmask: "ffff:ffff:ffff:ffff::" }],
    })),
  );
  if (Object.keys(settings).length > 0)
    await updateComputer(database.db, owner, registration.computerId, settings);
  return { id: registration.computerId, actor };
}
