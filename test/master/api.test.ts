import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { request as undiciRequest } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterApiError, MasterClient, type MasterConnection } from "../../protocol/client.js";
import { createPostgresDatabase } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

const RELEASE = "https://example.com/software/web/software.cfg";
const silent = pino({ level: "silent" });

async function refusal(promise: Promise<unknown>): Promise<MasterApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MasterApiError) return error;
    throw error;
  }
  throw new Error("expected the master to refuse");
}

const databases = [
  { name: "pglite", requirements: [], url: () => undefined },
  {
    name: "postgres",
    requirements: [
      {
        why: "$TEST_DATABASE_URL: a real Postgres server",
        isMet: () => Boolean(process.env.TEST_DATABASE_URL),
      },
    ],
    url: () => process.env.TEST_DATABASE_URL,
  },
];

for (const database of databases) {
  describeWith(
    database.requirements,
    `master over HTTPS with client certificates, on ${database.name}`,
    () => {
      let dataDir: string;
      let dropDatabase = async () => {};
      let master: RunningMaster;
      let admin: MasterClient;
      let connection: (certificate?: string, key?: string) => MasterConnection;
      const clients: MasterClient[] = [];
      const client = (certificate?: string, key?: string) => {
        const created = new MasterClient(connection(certificate, key));
        clients.push(created);
        return created;
      };

      beforeAll(async () => {
        dataDir = await mkdtemp(join(tmpdir(), "slap-master-"));
        let databaseUrl: string | undefined;
        if (database.url()) {
          // A database of its own, so runs never see each other's rows.
          const created = await createPostgresDatabase("slapos_api");
          databaseUrl = created.url;
          dropDatabase = created.drop;
        }
        master = await startMaster({ dataDir, databaseUrl, port: 0, logger: silent });
        const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
        connection = (certificate, key) => ({ url: master.url, ca: config.ca, certificate, key });
        admin = client(config.certificate, config.key);
      });

      afterAll(async () => {
        for (const each of clients) await each.close();
        await master?.close();
        await dropDatabase();
        await rm(dataDir, { recursive: true, force: true });
      });

      it("writes the admin's client config, readable by its owner only", async () => {
        expect((await stat(master.adminConfigPath)).mode & 0o777).toBe(0o600);
        const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
        expect(config).toMatchObject({ url: master.url, personId: expect.stringMatching(/^PERSON-/) });
        expect(config.key).toContain("PRIVATE KEY");
      });

      it("refuses callers without a certificate (401) but lets a node register with its token", async () => {
        const anonymous = client();
        const noIdentity = await refusal(anonymous.listInstances());
        expect(noIdentity).toMatchObject({ status: 401, kind: "unauthenticated" });
        const { token } = await admin.createRegistrationToken();
        const registration = await anonymous.register(token, "first-node");
        expect(registration.computerId).toMatch(/^COMP-/);
        const reused = await refusal(anonymous.register(token));
        expect(reused).toMatchObject({ status: 400, field: "token" });
      });

      it("runs the whole flow: register, format, supply, request, deploy, publish, destroy", async () => {
        const alice = await admin.createPerson({ name: "alice" });
        const aliceClient = client(alice.certificate, alice.privateKey);
        const { token } = await aliceClient.createRegistrationToken();
        const registration = await client().register(token, "alice-node");
        const node = client(registration.certificate, registration.privateKey);
        await node.uploadPartitions(registration.computerId, [
          {
            reference: "slappart0",
            addresses: [{ interface: "eth0", address: "fd00::10", netmask: "ffff::" }],
          },
        ]);
        await aliceClient.supply(registration.computerId, RELEASE);
        const instance = await aliceClient.requestInstance({
          title: "blog",
          softwareReleaseUrl: RELEASE,
          parameters: { a: "1" },
        });
        expect(instance).toMatchObject({
          computerId: registration.computerId,
          partitionReference: "slappart0",
          status: "deploying",
        });

        const state = await node.desiredState(registration.computerId);
        expect(state.software).toEqual([{ url: RELEASE, requestedState: "available" }]);
        expect(state.partitions[0]?.instance).toMatchObject({ id: instance.id, parameters: { a: "1" } });

        // The node acts for the instance with the instance's own certificate.
        const credentials = await node.instanceCredentials(instance.id);
        const asInstance = client(credentials.certificate, credentials.privateKey);
        await asInstance.publishConnectionParameters(instance.id, { url: "http://[fd00::10]:8080/" });
        await node.reportInstance(instance.id, { state: "started" });
        expect(await aliceClient.getInstance(instance.id)).toMatchObject({
          status: "ready",
          connectionParameters: { url: "http://[fd00::10]:8080/" },
        });

        await aliceClient.requestInstance({ title: "blog", softwareReleaseUrl: RELEASE, state: "destroyed" });
        const destroyed = await node.reportDestroyed(instance.id);
        expect(destroyed.status).toBe("destroyed");
        const revoked = await refusal(asInstance.getInstance(instance.id));
        expect(revoked).toMatchObject({ status: 401 });
      });

      it("keeps computers, instances and persons to their own objects", async () => {
        const alice = await admin.createPerson({ name: "alice2" });
        const bob = await admin.createPerson({ name: "bob2" });
        const aliceClient = client(alice.certificate, alice.privateKey);
        const bobClient = client(bob.certificate, bob.privateKey);
        const nodeOf = async (owner: MasterClient) => {
          const registration = await client().register((await owner.createRegistrationToken()).token);
          const node = client(registration.certificate, registration.privateKey);
          await node.uploadPartitions(registration.computerId, [{ reference: "slappart0", addresses: [] }]);
          return { id: registration.computerId, node };
        };
        const aliceNode = await nodeOf(aliceClient);
        const bobNode = await nodeOf(bobClient);
        expect(await refusal(bobNode.node.desiredState(aliceNode.id))).toMatchObject({ status: 403 });
        expect(await refusal(bobClient.getComputer(aliceNode.id))).toMatchObject({ status: 403 });
        const mine = await aliceClient.requestInstance({
          title: "a",
          softwareReleaseUrl: RELEASE,
          sla: { computer_guid: aliceNode.id },
        });
        const theirs = await bobClient.requestInstance({
          title: "b",
          softwareReleaseUrl: RELEASE,
          sla: { computer_guid: bobNode.id },
        });
        expect(await refusal(bobClient.getInstance(mine.id))).toMatchObject({ status: 403 });
        const mineAsInstance = await aliceNode.node.instanceCredentials(mine.id);
        const instanceClient = client(mineAsInstance.certificate, mineAsInstance.privateKey);
        expect(
          await refusal(instanceClient.publishConnectionParameters(theirs.id, { x: "y" })),
        ).toMatchObject({
          status: 403,
        });
        expect(await refusal(bobNode.node.instanceCredentials(mine.id))).toMatchObject({ status: 403 });
        expect(await refusal(bobClient.createPerson({ name: "mallory" }))).toMatchObject({ status: 403 });
      });

      it("answers bad input with 4xx naming the field, never 500", async () => {
        const raw = async (method: string, path: string, body: string, contentType = "application/json") => {
          const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
          const { Agent } = await import("undici");
          const dispatcher = new Agent({
            connect: { ca: config.ca, cert: config.certificate, key: config.key },
          });
          const response = await undiciRequest(new URL(path, master.url), {
            method: method as "POST",
            body,
            headers: { "content-type": contentType },
            dispatcher,
          });
          const text = await response.body.text();
          await dispatcher.close();
          return { status: response.statusCode, body: JSON.parse(text) };
        };
        const malformed = await raw("POST", "api/v1/instances", "{not json");
        expect(malformed.status).toBe(400);
        const wrongType = await raw(
          "POST",
          "api/v1/instances",
          JSON.stringify({ title: 5, softwareReleaseUrl: RELEASE }),
        );
        expect(wrongType).toMatchObject({
          status: 400,
          body: { error: { kind: "invalid", field: "body.title" } },
        });
        const unknownField = await raw(
          "POST",
          "api/v1/instances",
          JSON.stringify({ title: "x", softwareReleaseUrl: RELEASE, colour: 1 }),
        );
        expect(unknownField.status).toBe(400);
        expect(unknownField.body.error.message).toContain("colour");
        const unknownSla = await raw(
          "POST",
          "api/v1/instances",
          JSON.stringify({ title: "x", softwareReleaseUrl: RELEASE, sla: { speed: "fast" } }),
        );
        expect(unknownSla).toMatchObject({ status: 400, body: { error: { field: "sla.speed" } } });
        const oversized = await raw(
          "POST",
          "api/v1/instances",
          JSON.stringify({ title: "x".repeat(5_000_000), softwareReleaseUrl: RELEASE }),
        );
        expect(oversized.status).toBe(413);
        const badWait = await raw("GET", "api/v1/computers/COMP-X/desired-state?wait=-3", "");
        expect(badWait).toMatchObject({ status: 400, body: { error: { field: "query.wait" } } });
        expect(await refusal(admin.getInstance("SOFTINST-NOPE"))).toMatchObject({ status: 404 });
        expect(await refusal(admin.call("GET", "no/such/route"))).toMatchObject({ status: 404 });
      });

      it("serves an OpenAPI document generated from the schemas", async () => {
        const document = await admin.call<{ openapi: string; paths: Record<string, unknown> }>(
          "GET",
          "openapi.json",
        );
        expect(document.openapi).toBe("3.1.0");
        expect(Object.keys(document.paths)).toEqual(
          expect.arrayContaining(["/instances", "/computers/{computerId}/desired-state", "/register"]),
        );
      });

      it("answers a long poll as soon as the computer's desired state changes", async () => {
        const registration = await client().register((await admin.createRegistrationToken()).token);
        const node = client(registration.certificate, registration.privateKey);
        await node.uploadPartitions(registration.computerId, [{ reference: "slappart0", addresses: [] }]);
        const before = await node.desiredState(registration.computerId);
        // 300 s is beyond the test's timeout: only the change can answer it in time.
        const polling = node.desiredState(registration.computerId, {
          after: before.version,
          waitSeconds: 300,
        });
        await admin.supply(registration.computerId, RELEASE);
        const after = await polling;
        expect(after.version).toBeGreaterThan(before.version);
        expect(after.software).toEqual([{ url: RELEASE, requestedState: "available" }]);
      });
    },
  );
}

describeWith([], "master in --insecure-http mode", () => {
  it("listens on loopback only, and serves without certificates as the admin", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "slap-insecure-"));
    try {
      await expect(
        startMaster({ dataDir, host: "0.0.0.0", insecureHttp: true, logger: silent }),
      ).rejects.toThrow(/only listens on loopback/);
      const master = await startMaster({ dataDir, insecureHttp: true, logger: silent });
      const anonymous = new MasterClient({ url: master.url });
      try {
        expect(master.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
        expect(await anonymous.listComputers()).toEqual([]);
        const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
        expect(config).toEqual({ url: master.url, personId: expect.stringMatching(/^PERSON-/) });
      } finally {
        await anonymous.close();
        await master.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
