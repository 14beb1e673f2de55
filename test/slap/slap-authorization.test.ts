import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { marshal } from "../../protocol/xml-marshaller.js";
import { type HttpsMaster, startHttpsMaster } from "../master/https-master.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

// Every SLAP endpoint against every kind of identity, over HTTPS with client certificates: the
// SLAP door gives the same verdict as the JSON door for the same act, because both ask the model.

const RELEASE = "https://example.com/software/web/software.cfg";
const OTHER_RELEASE = "https://example.com/software/other/software.cfg";
const IDENTITIES = [
  "owner",
  "other person",
  "admin",
  "host computer",
  "other computer",
  "instance",
  "other instance",
] as const;
type Identity = (typeof IDENTITIES)[number];

interface World {
  clients: Record<Identity, MasterClient>;
  /** Alice's computer, hosting her instance. */
  computerId: string;
  instanceId: string;
  reference: string;
}

interface Act {
  name: string;
  /** The SLAP call: path, fields, GET or POST. */
  slap: (world: World, identity: Identity) => { path: string; fields: Record<string, string>; get?: boolean };
  /** The same act through the JSON API, where it has one. */
  json?: (client: MasterClient, world: World, identity: Identity) => Promise<unknown>;
  allowed: Identity[];
}

const partition = (world: World) => ({
  computer_id: world.computerId,
  computer_partition_id: world.reference,
});
const softwareReport = (path: string, state: "building" | "available" | "error" | "destroyed"): Act => ({
  name: path,
  slap: (world) => ({ path, fields: { computer_id: world.computerId, url: RELEASE, error_log: "log" } }),
  json: (client, world) => client.reportSoftware(world.computerId, { url: RELEASE, state }),
  allowed: ["admin", "host computer"],
});
const readers: Identity[] = ["admin", "host computer", "instance"];

const ACTS: Act[] = [
  ...["getFullComputerInformation", "getComputerInformation"].map(
    (path): Act => ({
      name: path,
      slap: (world) => ({ path, fields: { computer_id: world.computerId }, get: true }),
      json: (client, world) => client.desiredState(world.computerId),
      allowed: readers,
    }),
  ),
  {
    name: "registerComputerPartition",
    slap: (world) => ({
      path: "registerComputerPartition",
      fields: { computer_reference: world.computerId, computer_partition_reference: world.reference },
      get: true,
    }),
    allowed: readers,
  },
  {
    name: "getComputerPartitionCertificate",
    slap: (world) => ({ path: "getComputerPartitionCertificate", fields: partition(world), get: true }),
    json: (client, world) => client.instanceCredentials(world.instanceId),
    allowed: ["admin", "host computer"],
  },
  {
    name: "loadComputerConfigurationFromXML",
    slap: (world) => ({
      path: "loadComputerConfigurationFromXML",
      fields: {
        xml: marshal({
          reference: world.computerId,
          partition_list: ["slappart0", "slappart1", "slappart2", "slappart3"].map((reference) => ({
            reference,
            address_list: [],
            tap: { name: "" },
          })),
        }),
      },
    }),
    json: (client, world) =>
      client.uploadPartitions(
        world.computerId,
        ["slappart0", "slappart1", "slappart2", "slappart3"].map((reference) => ({
          reference,
          addresses: [],
        })),
      ),
    allowed: ["admin", "host computer"],
  },
  {
    name: "supplySupply",
    slap: (world) => ({
      path: "supplySupply",
      fields: { computer_id: world.computerId, url: OTHER_RELEASE },
    }),
    json: (client, world) => client.supply(world.computerId, OTHER_RELEASE),
    allowed: ["owner", "admin"],
  },
  {
    name: "requestComputerPartition (a root, or an instance's child)",
    slap: (_world, identity) => ({
      path: "requestComputerPartition",
      fields: { software_release: RELEASE, partition_reference: `slap ${identity}` },
    }),
    json: (client, _world, identity) =>
      client.requestInstance({ title: `json ${identity}`, softwareReleaseUrl: RELEASE }),
    allowed: ["owner", "other person", "admin", "instance", "other instance"],
  },
  {
    name: "requestComputerPartition (inside the tree of the instance in a named partition)",
    slap: (world, identity) => ({
      path: "requestComputerPartition",
      fields: { ...partition(world), software_release: RELEASE, partition_reference: `child ${identity}` },
    }),
    allowed: ["admin", "instance"],
  },
  {
    name: "setComputerPartitionConnectionXml",
    slap: (world, identity) => ({
      path: "setComputerPartitionConnectionXml",
      fields: {
        ...partition(world),
        connection_xml: marshal({ url: `https://${identity.replace(/ /g, "-")}/` }),
      },
    }),
    json: (client, world, identity) =>
      client.publishConnectionParameters(world.instanceId, {
        url: `https://${identity.replace(/ /g, "-")}/`,
      }),
    allowed: ["admin", "host computer", "instance"],
  },
  softwareReport("buildingSoftwareRelease", "building"),
  softwareReport("availableSoftwareRelease", "available"),
  softwareReport("softwareReleaseError", "error"),
  softwareReport("destroyedSoftwareRelease", "destroyed"),
  ...(["started", "stopped"] as const).map(
    (state): Act => ({
      name: `${state}ComputerPartition`,
      slap: (world) => ({ path: `${state}ComputerPartition`, fields: partition(world) }),
      json: (client, world) => client.reportInstance(world.instanceId, { state }),
      allowed: ["admin", "host computer"],
    }),
  ),
  {
    name: "softwareInstanceError",
    slap: (world) => ({ path: "softwareInstanceError", fields: { ...partition(world), error_log: "boom" } }),
    json: (client, world) => client.reportInstance(world.instanceId, { state: "error", errorLog: "boom" }),
    allowed: ["admin", "host computer"],
  },
  {
    name: "destroyedComputerPartition",
    slap: (world) => ({ path: "destroyedComputerPartition", fields: partition(world) }),
    // The instance is not requested destroyed: allowed callers get 409 from the JSON API, and
    // slapos.core's "not destroying yet" answer (200) from the SLAP API.
    json: (client, world) => client.reportDestroyed(world.instanceId),
    allowed: ["admin", "host computer"],
  },
  {
    name: "softwareInstanceBang",
    slap: (world) => ({ path: "softwareInstanceBang", fields: { ...partition(world), message: "bang" } }),
    json: (client, world) => client.bang(world.instanceId),
    allowed: ["owner", "admin", "host computer", "instance"],
  },
  {
    name: "computerBang",
    slap: (world) => ({ path: "computerBang", fields: { computer_id: world.computerId, message: "bang" } }),
    allowed: ["owner", "admin", "host computer"],
  },
  {
    name: "useComputer",
    slap: (world) => ({ path: "useComputer", fields: { computer_id: world.computerId, use_string: "" } }),
    json: (client, world) => client.reportUsage(world.computerId, []),
    allowed: ["admin", "host computer"],
  },
  {
    name: "updateComputerPartitionRelatedInstanceList",
    slap: (world) => ({
      path: "updateComputerPartitionRelatedInstanceList",
      fields: { ...partition(world), instance_reference_xml: marshal([]) },
    }),
    allowed: ["admin", "host computer", "instance"],
  },
];

/** The JSON API's verdict: forbidden or not (a 409 or 404 is an allowed caller meeting the state). */
async function jsonStatus(call: Promise<unknown>): Promise<number> {
  try {
    await call;
    return 200;
  } catch (error) {
    const status = (error as { status?: number }).status;
    if (typeof status !== "number") throw error;
    return status;
  }
}

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `SLAP authorization for every identity, on ${kind.name}`, () => {
    let https: HttpsMaster;
    let world: World;

    beforeAll(async () => {
      https = await startHttpsMaster(kind);
      const alice = await https.person("alice");
      const bob = await https.person("bob");
      const aliceNode = await https.node(alice.client, ["slappart0", "slappart1", "slappart2", "slappart3"]);
      const bobNode = await https.node(bob.client, ["slappart0", "slappart1"]);
      const instance = await alice.client.requestInstance({
        title: "victim",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: aliceNode.id },
      });
      const other = await bob.client.requestInstance({
        title: "attacker",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: bobNode.id },
      });
      const credentials = await aliceNode.client.instanceCredentials(instance.id);
      const otherCredentials = await bobNode.client.instanceCredentials(other.id);
      world = {
        computerId: aliceNode.id,
        instanceId: instance.id,
        reference: instance.partitionReference ?? "",
        clients: {
          owner: alice.client,
          "other person": bob.client,
          admin: https.admin,
          "host computer": aliceNode.client,
          "other computer": bobNode.client,
          instance: https.client(credentials.certificate, credentials.privateKey),
          "other instance": https.client(otherCredentials.certificate, otherCredentials.privateKey),
        },
      };
    });
    afterAll(async () => {
      await https?.close();
    });

    it("lets a person act in another person's tree through neither door", async () => {
      const { clients } = world;
      const before = await clients.owner.getInstance(world.instanceId);
      // slapos.core 1.26 names the partition in a header: it proves nothing and grants nothing.
      const header = {
        authorization: `X-SlapPartition computer_id=${world.computerId}, computer_partition_id=${world.reference}`,
      };
      const attacks = [
        [
          "setComputerPartitionConnectionXml",
          { ...partition(world), connection_xml: marshal({ url: "https://evil/" }) },
        ],
        [
          "requestComputerPartition",
          { ...partition(world), software_release: RELEASE, partition_reference: "implant" },
        ],
        ["softwareInstanceBang", { ...partition(world), message: "bang" }],
      ] as const;
      for (const [path, fields] of attacks) {
        for (const headers of [{}, header]) {
          const answer = await https.slap(clients["other person"], path, fields, { headers });
          expect(answer.status, `${path}: ${answer.text}`).toBe(403);
        }
      }
      const after = await clients.owner.getInstance(world.instanceId);
      expect(after.connectionParameters).toEqual(before.connectionParameters);
      expect(after.timestamp).toBe(before.timestamp);
      const tree = (await clients.owner.listInstances()).filter((each) => each.rootId === world.instanceId);
      expect(tree.map((each) => each.title)).toEqual(["victim"]);
      const bobs = await clients["other person"].listInstances();
      expect(bobs.map((each) => each.title)).not.toContain("implant");
    });

    for (const act of ACTS) {
      it(`${act.name}: allowed to ${act.allowed.join(", ")} only, as through the JSON API`, async () => {
        const verdicts: Record<string, string> = {};
        const expected: Record<string, string> = {};
        for (const identity of IDENTITIES) {
          const call = act.slap(world, identity);
          const answer = await https.slap(world.clients[identity], call.path, call.fields, {
            method: call.get ? "GET" : "POST",
          });
          expect(answer.status, `${identity} → ${call.path}: ${answer.text}`).toBeLessThan(500);
          // A pending request (408) was accepted: the master is placing it.
          const slapVerdict =
            answer.status === 403
              ? "forbidden"
              : answer.status === 200 || answer.status === 408
                ? "allowed"
                : `status ${answer.status}`;
          verdicts[`SLAP ${identity}`] = slapVerdict;
          expected[`SLAP ${identity}`] = act.allowed.includes(identity) ? "allowed" : "forbidden";
          if (act.json) {
            const status = await jsonStatus(act.json(world.clients[identity], world, identity));
            verdicts[`JSON ${identity}`] =
              status === 403
                ? "forbidden"
                : status === 200 || status === 409
                  ? "allowed"
                  : `status ${status}`;
            expected[`JSON ${identity}`] = expected[`SLAP ${identity}`] as string;
          }
        }
        expect(verdicts).toEqual(expected);
      });
    }

    it("shows an instance only its own partition and release of its computer", async () => {
      const { clients } = world;
      await https.slap(clients.owner, "supplySupply", { computer_id: world.computerId, url: OTHER_RELEASE });
      const asHost = await https.slap(
        clients["host computer"],
        "getFullComputerInformation",
        { computer_id: world.computerId },
        { method: "GET" },
      );
      expect(asHost.text).toContain(OTHER_RELEASE);
      expect(asHost.text).toContain("slappart3");
      const asInstance = await https.slap(
        clients.instance,
        "getFullComputerInformation",
        { computer_id: world.computerId },
        { method: "GET" },
      );
      expect(asInstance.status).toBe(200);
      expect(asInstance.text).toContain(world.reference);
      expect(asInstance.text).toContain(RELEASE);
      expect(asInstance.text).not.toContain(OTHER_RELEASE);
      for (const reference of ["slappart0", "slappart1", "slappart2", "slappart3"].filter(
        (each) => each !== world.reference,
      )) {
        expect(asInstance.text).not.toContain(`<string>${reference}</string>`);
      }
      const json = await clients.instance.desiredState(world.computerId);
      expect(json.partitions.map((each) => each.reference)).toEqual([world.reference]);
      expect(json.software.map((each) => each.url)).toEqual([RELEASE]);
      const otherPartition = await https.slap(
        clients.instance,
        "registerComputerPartition",
        {
          computer_reference: world.computerId,
          computer_partition_reference: world.reference === "slappart0" ? "slappart1" : "slappart0",
        },
        { method: "GET" },
      );
      expect(otherPartition.status).toBe(403);
    });
  });
}
