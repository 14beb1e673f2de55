import { and, eq, isNotNull, sql } from "drizzle-orm";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { Database } from "../../master/db/connect.js";
import { contracts, partitions, softwareInstances } from "../../master/db/schema.js";
import type { Actor } from "../../master/model/actor.js";
import { computeBill } from "../../master/model/billing.js";
import {
  createRegistrationToken,
  getComputer,
  registerComputer,
  uploadPartitions,
} from "../../master/model/computers.js";
import { DesiredStates, readDesiredState } from "../../master/model/desired-state.js";
import { ModelError } from "../../master/model/errors.js";
import {
  bangInstance,
  completeDestruction,
  getInstance,
  reportInstanceState,
  requestInstance,
  setConnectionParameters,
} from "../../master/model/instances.js";
import { reportSoftwareState, supplySoftware } from "../../master/model/software.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { addComputer, createMarketplace, type Marketplace } from "./fixtures.js";

const RELEASE = "https://example.com/software/web/software.cfg";
/** Bob's computers serve the public marketplace: alice's requests may be placed there. */
const OPEN = { allocationScope: "open" } as const;

/** Every computer's free-partition counter matches its partitions. */
async function expectFreeCountsConsistent(database: Database): Promise<void> {
  const result = await database.db.execute<{ id: string; counter: number; actual: number }>(sql`
    select c.id, c.free_partitions as counter,
           (select count(*) from partitions p where p.computer_id = c.id and p.state = 'free')::int as actual
    from computers c`);
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as {
    counter: number;
    actual: number;
  }[];
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) expect(Number(row.counter)).toBe(Number(row.actual));
}

async function refusal(promise: Promise<unknown>): Promise<ModelError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ModelError) return error;
    throw error;
  }
  throw new Error("expected the operation to be refused");
}

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `marketplace on ${kind.name}`, () => {
    let database: Database & { dispose(): Promise<void> };
    let market: Marketplace;

    beforeEach(async () => {
      database = await kind.open();
      market = await createMarketplace(database);
    });
    afterEach(async () => {
      await database?.dispose();
    });

    it("registers a computer with a one-time token, and refuses the token a second time", async () => {
      const { token } = await createRegistrationToken(database.db, market.alice);
      const registration = await registerComputer(database.db, market.authority, token, { title: "node-1" });
      expect(registration.computerId).toMatch(/^COMP-/);
      expect(registration.certificate).toContain("BEGIN CERTIFICATE");
      const again = await refusal(registerComputer(database.db, market.authority, token));
      expect(again).toMatchObject({ kind: "invalid", field: "token" });
      expect(again.message).toContain("already used");
      const computer = await getComputer(database.db, market.alice, registration.computerId);
      expect(computer).toMatchObject({ title: "node-1", ownerId: market.alice.id });
    });

    it("allocates only to partitions whose computer meets every SLA condition", async () => {
      const cheap = await addComputer(database, market, market.bob, 2, {
        ...OPEN,
        region: "eu",
        capabilities: { cpu_architecture: "x86_64", cpu_cores: 4, memory_mb: 8192 },
        pricePerPartitionHour: 0.01,
      });
      const big = await addComputer(database, market, market.bob, 2, {
        ...OPEN,
        region: "us",
        capabilities: { cpu_architecture: "aarch64", cpu_cores: 32, memory_mb: 65536 },
        pricePerPartitionHour: 0.5,
      });
      const request = (title: string, sla: Record<string, string>) =>
        requestInstance(database.db, market.alice, { title, softwareReleaseUrl: RELEASE, sla });

      expect((await request("by-region", { region: "us" })).computerId).toBe(big.id);
      expect((await request("by-cores", { cpu_cores: "16" })).computerId).toBe(big.id);
      expect((await request("by-arch", { cpu_architecture: "x86_64" })).computerId).toBe(cheap.id);
      expect((await request("by-guid", { computer_guid: cheap.id, max_price: "0.1" })).computerId).toBe(
        cheap.id,
      );
      const tooCheap = await request("too-cheap", { max_price: "0.001" });
      expect(tooCheap).toMatchObject({ status: "pending", computerId: null });

      const unknownKey = await refusal(request("typo", { regoin: "eu" }));
      expect(unknownKey).toMatchObject({ kind: "invalid", field: "sla.regoin" });
      expect(unknownKey.message).toContain("known keys: computer_guid");
      const notNumber = await refusal(request("bad-cores", { cpu_cores: "many" }));
      expect(notNumber).toMatchObject({ kind: "invalid", field: "sla.cpu_cores" });
      const noComputer = await refusal(request("nowhere", { computer_guid: "COMP-NOPE" }));
      expect(noComputer).toMatchObject({ kind: "invalid", field: "sla.computer_guid" });
    });

    it("records a trading contract per allocation and bills partition-hours at the agreed price", async () => {
      const computer = await addComputer(database, market, market.bob, 1, {
        ...OPEN,
        pricePerPartitionHour: 2,
      });
      const instance = await requestInstance(database.db, market.alice, {
        title: "paid",
        softwareReleaseUrl: RELEASE,
      });
      const [contract] = await database.db
        .select()
        .from(contracts)
        .where(eq(contracts.instanceId, instance.id));
      expect(contract).toMatchObject({
        requesterId: market.alice.id,
        providerId: market.bob.id,
        computerId: computer.id,
        partitionReference: "slappart0",
        pricePerHour: 2,
        endedAt: null,
      });
      const from = new Date((contract?.startedAt.getTime() ?? 0) - 3_600_000);
      const to = new Date((contract?.startedAt.getTime() ?? 0) + 90 * 60_000);
      const bill = await computeBill(database.db, market.alice, market.alice.id, from, to);
      expect(bill.lines).toHaveLength(1);
      expect(bill.lines[0]?.hours).toBeCloseTo(1.5, 6);
      expect(bill.total).toBeCloseTo(3, 6);
      expect((await refusal(computeBill(database.db, market.bob, market.alice.id, from, to))).kind).toBe(
        "forbidden",
      );
    });

    it("supplies the release where it allocates, and prefers computers that already have it", async () => {
      const plain = await addComputer(database, market, market.bob, 1, OPEN);
      const ready = await addComputer(database, market, market.bob, 1, {
        ...OPEN,
        pricePerPartitionHour: 5,
      });
      await supplySoftware(database.db, market.bob, ready.id, RELEASE, "available");
      const first = await requestInstance(database.db, market.alice, {
        title: "a",
        softwareReleaseUrl: RELEASE,
      });
      expect(first.computerId).toBe(ready.id); // supplied beats cheaper
      const second = await requestInstance(database.db, market.alice, {
        title: "b",
        softwareReleaseUrl: RELEASE,
      });
      expect(second.computerId).toBe(plain.id);
      const state = await readDesiredState(database.db, plain.actor, plain.id);
      expect(state.software).toEqual([{ url: RELEASE, requestedState: "available" }]);
      const removal = await refusal(supplySoftware(database.db, market.bob, plain.id, RELEASE, "destroyed"));
      expect(removal).toMatchObject({ kind: "conflict" });
      expect(removal.message).toContain("'b'");
    });

    it("answers a re-request with the same title cheaply, and bumps the timestamp only on change", async () => {
      const computer = await addComputer(database, market, market.bob, 2, OPEN);
      const first = await requestInstance(database.db, market.alice, {
        title: "blog",
        softwareReleaseUrl: RELEASE,
        parameters: { name: "one" },
      });
      const versionBefore = (await getComputer(database.db, market.bob, computer.id)).desiredVersion;
      const same = await requestInstance(database.db, market.alice, {
        title: "blog",
        softwareReleaseUrl: RELEASE,
        parameters: { name: "one" },
      });
      expect(same).toMatchObject({
        id: first.id,
        timestamp: first.timestamp,
        partitionReference: first.partitionReference,
      });
      expect((await getComputer(database.db, market.bob, computer.id)).desiredVersion).toBe(versionBefore);

      const changed = await requestInstance(database.db, market.alice, {
        title: "blog",
        softwareReleaseUrl: RELEASE,
        parameters: { name: "two" },
      });
      expect(changed.id).toBe(first.id);
      expect(changed.timestamp).toBeGreaterThan(first.timestamp);
      expect((await getComputer(database.db, market.bob, computer.id)).desiredVersion).toBeGreaterThan(
        versionBefore,
      );
      const stopped = await requestInstance(database.db, market.alice, {
        title: "blog",
        softwareReleaseUrl: RELEASE,
        state: "stopped",
      });
      expect(stopped.timestamp).toBeGreaterThan(changed.timestamp);
      expect(stopped.parameters).toEqual({ name: "two" }); // absent parameters keep the current ones
    });

    it("places a shared instance on a busy partition with the same release and type", async () => {
      const computer = await addComputer(database, market, market.bob, 2, OPEN);
      const host = await requestInstance(database.db, market.alice, {
        title: "frontend",
        softwareReleaseUrl: RELEASE,
        // A frontend serving anyone's sites, on a marketplace computer.
        sharingScope: "open",
      });
      const shared = await requestInstance(database.db, market.bob, {
        title: "my-site",
        softwareReleaseUrl: RELEASE,
        shared: true,
        parameters: { url: "https://example.org" },
      });
      expect(shared).toMatchObject({ hostInstanceId: host.id, computerId: computer.id, status: "deploying" });
      const state = await readDesiredState(database.db, computer.actor, computer.id);
      const hosting = state.partitions.find((partition) => partition.instance?.id === host.id);
      expect(hosting?.instance?.sharedInstances).toEqual([
        {
          id: shared.id,
          title: "my-site",
          softwareType: "default",
          parameters: { url: "https://example.org" },
        },
      ]);
      expect(hosting?.instance?.timestamp).toBeGreaterThan(host.timestamp);
      // The host publishes for it, and nobody else may.
      const hostActor: Actor = { kind: "instance", id: host.id };
      const published = await setConnectionParameters(database.db, hostActor, shared.id, {
        url: "https://cdn/x",
      });
      expect(published.status).toBe("ready");
      const stranger = await requestInstance(database.db, market.alice, {
        title: "other",
        softwareReleaseUrl: RELEASE,
      });
      const refused = await refusal(
        setConnectionParameters(database.db, { kind: "instance", id: stranger.id }, shared.id, {
          url: "evil",
        }),
      );
      expect(refused.kind).toBe("forbidden");
      const orphan = await requestInstance(database.db, market.bob, {
        title: "no-host",
        softwareReleaseUrl: "https://example.com/other.cfg",
        shared: true,
      });
      expect(orphan.status).toBe("pending");
    });

    it("destroys a whole tree bottom-up when its root is destroyed, then frees every partition", async () => {
      const computer = await addComputer(database, market, market.bob, 3, OPEN);
      const root = await requestInstance(database.db, market.alice, {
        title: "root",
        softwareReleaseUrl: RELEASE,
      });
      const rootActor: Actor = { kind: "instance", id: root.id };
      const child = await requestInstance(database.db, rootActor, {
        title: "db",
        softwareReleaseUrl: RELEASE,
        softwareType: "db",
      });
      expect(child).toMatchObject({ parentId: root.id, rootId: root.id, ownerId: market.alice.id });
      // The child's connection parameters wake its parent.
      await setConnectionParameters(database.db, { kind: "instance", id: child.id }, child.id, {
        dsn: "pg://x",
      });
      const parentAfter = await getInstance(database.db, market.alice, root.id);
      expect(parentAfter.timestamp).toBeGreaterThan(root.timestamp);
      expect((await getInstance(database.db, rootActor, child.id)).connectionParameters).toEqual({
        dsn: "pg://x",
      });

      await requestInstance(database.db, market.alice, {
        title: "root",
        softwareReleaseUrl: RELEASE,
        state: "destroyed",
      });
      expect((await getInstance(database.db, market.alice, child.id)).requestedState).toBe("destroyed");
      const early = await refusal(completeDestruction(database.db, computer.actor, root.id));
      expect(early).toMatchObject({ kind: "conflict" });
      expect(early.message).toContain(child.id);
      await completeDestruction(database.db, computer.actor, child.id);
      const gone = await completeDestruction(database.db, computer.actor, root.id);
      expect(gone.status).toBe("destroyed");
      const busy = await database.db.select().from(partitions).where(isNotNull(partitions.instanceId));
      expect(busy).toEqual([]);
      await expectFreeCountsConsistent(database);
      const open = await database.db
        .select()
        .from(contracts)
        .where(and(eq(contracts.instanceId, root.id), eq(contracts.requesterId, market.alice.id)));
      expect(open[0]?.endedAt).not.toBeNull();
      // The title is free again.
      const again = await requestInstance(database.db, market.alice, {
        title: "root",
        softwareReleaseUrl: RELEASE,
      });
      expect(again.id).not.toBe(root.id);
    });

    it("keeps each identity to its own objects", async () => {
      const aliceComputer = await addComputer(database, market, market.alice, 1);
      const bobComputer = await addComputer(database, market, market.bob, 1, OPEN);
      const instance = await requestInstance(database.db, market.alice, {
        title: "private",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: aliceComputer.id },
      });
      expect((await refusal(getInstance(database.db, market.bob, instance.id))).kind).toBe("forbidden");
      expect((await refusal(readDesiredState(database.db, bobComputer.actor, aliceComputer.id))).kind).toBe(
        "forbidden",
      );
      expect(
        (await refusal(reportInstanceState(database.db, bobComputer.actor, instance.id, "started"))).kind,
      ).toBe("forbidden");
      expect((await refusal(getComputer(database.db, market.bob, aliceComputer.id))).kind).toBe("forbidden");
      const reported = await reportInstanceState(database.db, aliceComputer.actor, instance.id, "started");
      expect(reported.status).toBe("ready");
      expect((await refusal(bangInstance(database.db, market.bob, instance.id))).kind).toBe("forbidden");
    });

    it("places pending requests as the node uploads more partitions", async () => {
      const computer = await addComputer(database, market, market.bob, 1, OPEN);
      await requestInstance(database.db, market.alice, { title: "one", softwareReleaseUrl: RELEASE });
      const waiting = await requestInstance(database.db, market.alice, {
        title: "two",
        softwareReleaseUrl: RELEASE,
      });
      expect(waiting.status).toBe("pending");
      await uploadPartitions(database.db, computer.actor, computer.id, [
        { reference: "slappart0", addresses: [] },
        { reference: "slappart1", addresses: [{ interface: "eth0", address: "fd00::2", netmask: "ffff::" }] },
      ]);
      const placed = await getInstance(database.db, market.alice, waiting.id);
      expect(placed).toMatchObject({
        partitionReference: "slappart1",
        ipList: ["fd00::2"],
        status: "deploying",
      });
    });

    it("never gives a partition twice under concurrent requests", async () => {
      await addComputer(database, market, market.bob, 10, OPEN);
      await addComputer(database, market, market.bob, 10, OPEN);
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, index) =>
          requestInstance(database.db, index % 2 ? market.alice : market.bob, {
            title: `concurrent-${index}`,
            softwareReleaseUrl: RELEASE,
          }),
        ),
      );
      const placed = results.filter((result) => result.partitionReference !== null);
      expect(placed).toHaveLength(20);
      const places = new Set(placed.map((result) => `${result.computerId}/${result.partitionReference}`));
      expect(places.size).toBe(20);
      const rows = await database.db
        .select()
        .from(softwareInstances)
        .where(isNotNull(softwareInstances.partitionId));
      expect(new Set(rows.map((row) => row.partitionId)).size).toBe(20);
      await expectFreeCountsConsistent(database);
    });

    it("serves a cached desired state that follows every change a node must see", async () => {
      const computer = await addComputer(database, market, market.bob, 1, OPEN);
      const states = new DesiredStates(database.db); // one cache across every read, as in a master process
      const read = async () => JSON.parse((await states.read(computer.actor, computer.id)).json);
      expect((await read()).software).toEqual([]);
      await supplySoftware(database.db, market.bob, computer.id, RELEASE, "available");
      expect((await read()).software).toEqual([{ url: RELEASE, requestedState: "available" }]);
      await uploadPartitions(database.db, computer.actor, computer.id, [
        {
          reference: "slappart0",
          addresses: [{ interface: "eth0", address: "fd00::99", netmask: "ffff::" }],
        },
      ]);
      expect((await read()).partitions[0].addresses[0].address).toBe("fd00::99");
      const instance = await requestInstance(database.db, market.alice, {
        title: "cached",
        softwareReleaseUrl: RELEASE,
      });
      expect((await read()).partitions[0].instance.id).toBe(instance.id);
      await setConnectionParameters(database.db, { kind: "instance", id: instance.id }, instance.id, {
        url: "u",
      });
      expect((await read()).partitions[0].instance.connectionParameters).toEqual({ url: "u" });
      await requestInstance(database.db, market.alice, {
        title: "cached",
        softwareReleaseUrl: RELEASE,
        state: "destroyed",
      });
      expect((await read()).partitions[0].instance.requestedState).toBe("destroyed");
      await completeDestruction(database.db, computer.actor, instance.id);
      expect((await read()).partitions[0].instance).toBeNull();
      await supplySoftware(database.db, market.bob, computer.id, RELEASE, "destroyed");
      expect((await read()).software).toEqual([{ url: RELEASE, requestedState: "destroyed" }]);
      await reportSoftwareState(database.db, computer.actor, computer.id, RELEASE, "destroyed");
      expect((await read()).software).toEqual([]);
    });

    it("wakes a long-polling node as soon as its desired state changes", async () => {
      const computer = await addComputer(database, market, market.bob, 1, OPEN);
      const desiredStates = new DesiredStates(database.db);
      const stop = await database.onDesiredStateChange((id) => desiredStates.notify(id));
      try {
        const before = await readDesiredState(database.db, computer.actor, computer.id);
        // Far beyond the test's own timeout: only a wake-up can make this return in time.
        const waiting = desiredStates.wait(computer.actor, computer.id, before.version, 3_600_000);
        await requestInstance(database.db, market.alice, { title: "wake", softwareReleaseUrl: RELEASE });
        const after = JSON.parse((await waiting).json);
        expect(after.version).toBeGreaterThan(before.version);
        expect(after.partitions[0]?.instance?.title).toBe("wake");
        const idle = await desiredStates.wait(computer.actor, computer.id, after.version, 200);
        expect(idle.version).toBe(after.version);
      } finally {
        await stop();
      }
    });
  });
}
