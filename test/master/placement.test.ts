import { afterAll, beforeAll, expect, it } from "vitest";
import { marshal } from "../../protocol/xml-marshaller.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, refusal, startHttpsMaster } from "./https-master.js";

// Requests that found no room are placed as soon as room appears, whichever door it came
// through, oldest first, and requests nothing can satisfy hold up nobody. Shared instances attach
// only where the host instance and its computer consent.

const RELEASE = "https://example.com/software/web/software.cfg";
const FRONTEND = "https://example.com/software/frontend/software.cfg";

for (const kind of testDatabaseKinds) {
  describeWith(
    kind.requirements,
    `placement of waiting requests and shared instances, on ${kind.name}`,
    () => {
      let https: HttpsMaster;

      beforeAll(async () => {
        https = await startHttpsMaster(kind);
      });
      afterAll(async () => {
        await https?.close();
      });

      it("gives a destroyed instance's partition to the oldest request waiting for it", async () => {
        const alice = await https.person("alice-destroy");
        const node = await https.node(alice.client, ["slappart0"]);
        const sla = { computer_guid: node.id };
        const first = await alice.client.requestInstance({
          title: "first",
          softwareReleaseUrl: RELEASE,
          sla,
        });
        const older = await alice.client.requestInstance({
          title: "older",
          softwareReleaseUrl: RELEASE,
          sla,
        });
        const newer = await alice.client.requestInstance({
          title: "newer",
          softwareReleaseUrl: RELEASE,
          sla,
        });
        expect([first.status, older.status, newer.status]).toEqual(["deploying", "pending", "pending"]);

        await alice.client.requestInstance({
          title: "first",
          softwareReleaseUrl: RELEASE,
          sla,
          state: "destroyed",
        });
        await node.client.reportDestroyed(first.id);

        expect(await alice.client.getInstance(older.id)).toMatchObject({
          status: "deploying",
          computerId: node.id,
          partitionReference: "slappart0",
        });
        expect((await alice.client.getInstance(newer.id)).status).toBe("pending");
      });

      it("places a request behind 100 unplaceable ones when a node uploads partitions over SLAP", async () => {
        const carol = await https.person("carol");
        const node = await https.node(carol.client, []);
        for (let index = 0; index < 101; index++) {
          const nowhere = await carol.client.requestInstance({
            title: `nowhere-${index}`,
            softwareReleaseUrl: RELEASE,
            sla: { region: "nowhere" },
          });
          expect(nowhere.status).toBe("pending");
        }
        const later = await carol.client.requestInstance({ title: "later", softwareReleaseUrl: RELEASE });
        expect(later.status).toBe("pending");

        const upload = await https.slap(node.client, "loadComputerConfigurationFromXML", {
          xml: marshal({
            reference: node.id,
            partition_list: [{ reference: "slappart0", address_list: [], tap: { name: "" } }],
          }),
        });
        expect(upload.status, upload.text).toBe(200);
        expect(await carol.client.getInstance(later.id)).toMatchObject({
          status: "deploying",
          computerId: node.id,
        });
        const stillWaiting = (await carol.client.listInstances()).filter((each) => each.status === "pending");
        expect(stillWaiting).toHaveLength(101);
      });

      it("places a waiting request once the computer's settings or scope admit it", async () => {
        const dave = await https.person("dave");
        const erin = await https.person("erin");
        const node = await https.node(dave.client, ["slappart0", "slappart1"]);
        const regional = await dave.client.requestInstance({
          title: "regional",
          softwareReleaseUrl: RELEASE,
          sla: { region: "eu-dave" },
        });
        const stranger = await erin.client.requestInstance({
          title: "stranger",
          softwareReleaseUrl: RELEASE,
          sla: { cpu_cores: "64" },
        });
        expect([regional.status, stranger.status]).toEqual(["pending", "pending"]);

        await dave.client.updateComputer(node.id, { region: "eu-dave" });
        expect((await dave.client.getInstance(regional.id)).computerId).toBe(node.id);

        await dave.client.updateComputer(node.id, { capabilities: { cpu_cores: 64 } });
        // Dave's computer is personal: Erin's request fits it, and still waits.
        expect((await erin.client.getInstance(stranger.id)).status).toBe("pending");
        await dave.client.updateComputer(node.id, { allocationScope: "open" });
        expect((await erin.client.getInstance(stranger.id)).computerId).toBe(node.id);
      });

      it("keeps an instance's release once its computer no longer admits the owner", async () => {
        const henry = await https.person("henry");
        const ivy = await https.person("ivy");
        const node = await https.node(henry.client, ["slappart0"]);
        await henry.client.updateComputer(node.id, { allocationScope: "open" });
        const sla = { computer_guid: node.id };
        const tenant = await ivy.client.requestInstance({
          title: "tenant",
          softwareReleaseUrl: RELEASE,
          sla,
        });
        expect(tenant.computerId).toBe(node.id);
        await henry.client.updateComputer(node.id, { allocationScope: "personal" });

        const swap = await refusal(
          ivy.client.requestInstance({ title: "tenant", softwareReleaseUrl: FRONTEND, sla }),
        );
        expect(swap.status).toBe(403);
        expect(swap.message).toMatch(/no longer admits/);
        const computer = await henry.client.getComputer(node.id);
        expect(computer.software.map((software) => software.url)).not.toContain(FRONTEND);
        const updated = await ivy.client.requestInstance({
          title: "tenant",
          softwareReleaseUrl: RELEASE,
          sla,
          parameters: { colour: "blue" },
        });
        expect(updated.parameters).toEqual({ colour: "blue" });
        const destroying = await ivy.client.requestInstance({
          title: "tenant",
          softwareReleaseUrl: RELEASE,
          sla,
          state: "destroyed",
        });
        expect(destroying.status).toBe("destroying");
      });

      it("attaches a shared instance only where the host instance and its computer consent", async () => {
        const frank = await https.person("frank");
        const grace = await https.person("grace");
        const node = await https.node(frank.client, ["slappart0"]);
        const host = await frank.client.requestInstance({
          title: "frontend",
          softwareReleaseUrl: FRONTEND,
          sla: { computer_guid: node.id },
        });
        await node.client.reportInstance(host.id, { state: "started", timestamp: host.timestamp });
        const before = await frank.client.getInstance(host.id);

        const asked = { softwareReleaseUrl: FRONTEND, shared: true, sla: { instance_guid: host.id } };
        const refused = await refusal(grace.client.requestInstance({ title: "my-site", ...asked }));
        expect(refused.status).toBe(403);
        expect(refused.message).toMatch(/sharing scope personal/);
        // Without naming the host, nothing of Frank's serves Grace either.
        const unnamed = await grace.client.requestInstance({
          title: "any-site",
          softwareReleaseUrl: FRONTEND,
          shared: true,
        });
        expect(unnamed.hostInstanceId).toBeNull();
        const untouched = await frank.client.getInstance(host.id);
        expect(untouched.timestamp).toBe(before.timestamp);

        // The owner's own shared instances attach with the default scope.
        const own = await frank.client.requestInstance({ title: "own-site", ...asked });
        expect(own.hostInstanceId).toBe(host.id);

        // The host opts in; its computer (personal) still refuses Grace, until it is opened.
        await frank.client.requestInstance({
          title: "frontend",
          softwareReleaseUrl: FRONTEND,
          sla: { computer_guid: node.id },
          sharingScope: "open",
        });
        expect((await frank.client.getInstance(host.id)).sharingScope).toBe("open");
        const computerRefuses = await refusal(grace.client.requestInstance({ title: "my-site", ...asked }));
        expect(computerRefuses.message).toMatch(/allocation scope personal/);
        await frank.client.updateComputer(node.id, { allocationScope: "open" });
        const attached = await grace.client.requestInstance({ title: "my-site", ...asked });
        expect(attached.hostInstanceId).toBe(host.id);
      });
    },
  );
}
