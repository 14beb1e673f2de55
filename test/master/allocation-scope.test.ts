import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { marshal } from "../../protocol/xml-marshaller.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, refusal, startHttpsMaster } from "./https-master.js";

// A computer runs only what its owner's allocation scope lets others request on it: `personal`
// (the owner alone), `organisation` (members of the owner's organisations), `open` (anyone).
// Bob plays the attacker: he asks for his release on Alice's computer.

const RELEASE = "https://example.com/software/web/software.cfg";
const ATTACK = "https://attacker.example/software/miner/software.cfg";

type Person = { id: string; client: MasterClient };
type Node = { id: string; client: MasterClient };

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `allocation scope and organisations, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let alice: Person;
    let bob: Person;
    let carol: Person;
    let dave: Person;

    /** A computer of `owner` in a region of its own, so each test's requests can only land there. */
    const computerIn = async (owner: Person, region: string, partitionCount = 2): Promise<Node> => {
      const node = await master.node(
        owner.client,
        Array.from({ length: partitionCount }, (_, index) => `slappart${index}`),
      );
      await owner.client.updateComputer(node.id, { region });
      return node;
    };

    /** What the computer's node is told to install and run: nothing of the attacker's. */
    const expectNothingOf = async (node: Node, url: string, instanceIds: string[]) => {
      const desired = await node.client.desiredState(node.id);
      expect(desired.software.map((software) => software.url)).not.toContain(url);
      for (const partition of desired.partitions) {
        expect(instanceIds).not.toContain(partition.instance?.id);
        expect(partition.instance?.softwareReleaseUrl).not.toBe(url);
      }
    };

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      alice = await master.person("alice");
      bob = await master.person("bob");
      carol = await master.person("carol");
      dave = await master.person("dave");
    });
    afterAll(async () => {
      await master?.close();
    });

    it("refuses a request naming another person's personal computer, and supplies nothing there", async () => {
      const node = await computerIn(alice, "attack-named");
      expect((await alice.client.getComputer(node.id)).allocationScope).toBe("personal");

      const refused = await refusal(
        bob.client.requestInstance({
          title: "miner",
          softwareReleaseUrl: ATTACK,
          sla: { computer_guid: node.id },
        }),
      );
      expect(refused.status).toBe(403);
      expect(refused.message).toContain(node.id);
      expect(refused.message).toContain("personal");
      expect(refused.message).toMatch(/ask its owner|another computer/);
      expect((await bob.client.listInstances()).map((instance) => instance.title)).not.toContain("miner");
      await expectNothingOf(node, ATTACK, []);

      // The SLAP door gives the same answer.
      const slap = await master.slap(bob.client, "/requestComputerPartition", {
        software_release: ATTACK,
        partition_reference: "miner-slap",
        filter_xml: marshal({ computer_guid: node.id }),
      });
      expect(slap.status).toBe(403);
      expect(slap.text).toContain(node.id);
      await expectNothingOf(node, ATTACK, []);

      // Its owner is admitted, of course.
      const own = await alice.client.requestInstance({
        title: "own",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      expect(own.computerId).toBe(node.id);
    });

    it("never places another person's request on a personal computer it did not name", async () => {
      const node = await computerIn(alice, "attack-unnamed");
      const waiting = await bob.client.requestInstance({
        title: "miner-anywhere",
        softwareReleaseUrl: ATTACK,
        sla: { region: "attack-unnamed" },
      });
      expect(waiting).toMatchObject({ status: "pending", computerId: null });

      // New capacity there retries pending requests: bob's must still not be placed.
      await node.client.uploadPartitions(node.id, [
        { reference: "slappart0", addresses: [] },
        { reference: "slappart1", addresses: [] },
        { reference: "slappart2", addresses: [] },
      ]);
      expect(await bob.client.getInstance(waiting.id)).toMatchObject({ status: "pending", computerId: null });
      await expectNothingOf(node, ATTACK, [waiting.id]);

      // The partitions were free all along: alice's own request is placed there.
      const own = await alice.client.requestInstance({
        title: "own-anywhere",
        softwareReleaseUrl: RELEASE,
        sla: { region: "attack-unnamed" },
      });
      expect(own.computerId).toBe(node.id);
    });

    it("admits the members of the owner's organisations under 'organisation', until they leave", async () => {
      const organisation = await alice.client.createOrganisation({ title: "Alice & Co" });
      await alice.client.setOrganisationMember(organisation.id, carol.id, { role: "member" });
      const node = await computerIn(alice, "organisation", 4);
      const computer = await alice.client.updateComputer(node.id, { allocationScope: "organisation" });
      expect(computer.allocationScope).toBe("organisation");

      const member = await carol.client.requestInstance({
        title: "member-blog",
        softwareReleaseUrl: RELEASE,
        sla: { region: "organisation" },
      });
      expect(member.computerId).toBe(node.id);
      const named = await carol.client.requestInstance({
        title: "member-named",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      expect(named.computerId).toBe(node.id);

      const outsider = await dave.client.requestInstance({
        title: "outsider-blog",
        softwareReleaseUrl: ATTACK,
        sla: { region: "organisation" },
      });
      expect(outsider.status).toBe("pending");
      const outsiderNamed = await refusal(
        dave.client.requestInstance({
          title: "outsider-named",
          softwareReleaseUrl: ATTACK,
          sla: { computer_guid: node.id },
        }),
      );
      expect(outsiderNamed.status).toBe(403);
      expect(outsiderNamed.message).toContain("organisation");
      await expectNothingOf(node, ATTACK, [outsider.id]);

      // Removed from the organisation, carol places nothing more there.
      await alice.client.removeOrganisationMember(organisation.id, carol.id);
      const after = await carol.client.requestInstance({
        title: "member-after",
        softwareReleaseUrl: RELEASE,
        sla: { region: "organisation" },
      });
      expect(after).toMatchObject({ status: "pending", computerId: null });
      expect(
        (
          await refusal(
            carol.client.requestInstance({
              title: "member-after-named",
              softwareReleaseUrl: RELEASE,
              sla: { computer_guid: node.id },
            }),
          )
        ).status,
      ).toBe(403);
      // Still free room there, and still nobody's but alice's and her organisation's.
      await node.client.uploadPartitions(node.id, [{ reference: "slappart4", addresses: [] }]);
      expect(await carol.client.getInstance(after.id)).toMatchObject({ status: "pending" });
      expect(await dave.client.getInstance(outsider.id)).toMatchObject({ status: "pending" });

      // What carol placed while a member stays hers to update and destroy.
      const updated = await carol.client.requestInstance({
        title: "member-named",
        softwareReleaseUrl: RELEASE,
        parameters: { colour: "blue" },
        sla: { computer_guid: node.id },
      });
      expect(updated).toMatchObject({ computerId: node.id, parameters: { colour: "blue" } });
      const destroying = await carol.client.requestInstance({
        title: "member-named",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
        state: "destroyed",
      });
      expect(destroying.status).toBe("destroying");

      // Joining the organisation admits dave: his waiting request is placed at once.
      await alice.client.setOrganisationMember(organisation.id, dave.id, { role: "member" });
      expect(await dave.client.getInstance(outsider.id)).toMatchObject({ computerId: node.id });
      expect(await carol.client.getInstance(after.id)).toMatchObject({ status: "pending" });
    });

    it("admits anyone under 'open', the public marketplace", async () => {
      const node = await computerIn(alice, "open");
      await alice.client.updateComputer(node.id, { allocationScope: "open" });
      const anyone = await dave.client.requestInstance({
        title: "market-blog",
        softwareReleaseUrl: RELEASE,
        sla: { region: "open" },
      });
      expect(anyone.computerId).toBe(node.id);
      const named = await bob.client.requestInstance({
        title: "market-named",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      expect(named.computerId).toBe(node.id);
      expect((await node.client.desiredState(node.id)).software.map((software) => software.url)).toContain(
        RELEASE,
      );

      // Back to personal: what runs there keeps running, nothing new from others is placed.
      await alice.client.updateComputer(node.id, { allocationScope: "personal" });
      await bob.client.requestInstance({
        title: "market-named",
        softwareReleaseUrl: RELEASE,
        state: "destroyed",
      });
      const refused = await refusal(
        bob.client.requestInstance({
          title: "market-again",
          softwareReleaseUrl: RELEASE,
          sla: { computer_guid: node.id },
        }),
      );
      expect(refused.status).toBe(403);
      expect((await dave.client.getInstance(anyone.id)).computerId).toBe(node.id);
    });

    it("refuses an unknown allocation scope, naming the field", async () => {
      const node = await computerIn(alice, "unknown-scope", 1);
      const refused = await refusal(
        alice.client.updateComputer(node.id, {
          allocationScope: "everyone" as unknown as "open",
        }),
      );
      expect(refused).toMatchObject({ status: 400, field: "body.allocationScope" });
      const stranger = await refusal(bob.client.updateComputer(node.id, { allocationScope: "open" }));
      expect(stranger.status).toBe(403);
      expect((await alice.client.getComputer(node.id)).allocationScope).toBe("personal");
    });

    it("lets anyone create an organisation and its managers manage its members", async () => {
      const created = await bob.client.createOrganisation({ title: "Bob's band" });
      expect(created).toMatchObject({
        title: "Bob's band",
        members: [{ personId: bob.id, role: "manager" }],
      });
      expect(created.id).toMatch(/^ORG-/);

      const withCarol = await bob.client.setOrganisationMember(created.id, carol.id, { role: "member" });
      expect(withCarol.members).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ personId: bob.id, role: "manager" }),
          expect.objectContaining({ personId: carol.id, role: "member" }),
        ]),
      );
      expect((await carol.client.listOrganisations()).map((organisation) => organisation.id)).toContain(
        created.id,
      );
      expect((await carol.client.getOrganisation(created.id)).members).toHaveLength(2);

      // A member is not a manager: she cannot add anyone, nor promote herself.
      const notManager = await refusal(
        carol.client.setOrganisationMember(created.id, dave.id, { role: "member" }),
      );
      expect(notManager.status).toBe(403);
      expect(notManager.message).toContain("manager");
      expect(
        (await refusal(carol.client.setOrganisationMember(created.id, carol.id, { role: "manager" }))).status,
      ).toBe(403);

      // Outsiders neither read it nor see it; admins do.
      expect((await refusal(dave.client.getOrganisation(created.id))).status).toBe(403);
      expect((await dave.client.listOrganisations()).map((organisation) => organisation.id)).not.toContain(
        created.id,
      );
      expect((await master.admin.getOrganisation(created.id)).id).toBe(created.id);
      expect((await refusal(dave.client.getOrganisation("ORG-NOSUCHTHING"))).status).toBe(404);

      // Bad input names what was wrong.
      expect(
        await refusal(bob.client.setOrganisationMember(created.id, "PERSON-NOSUCHONE", { role: "member" })),
      ).toMatchObject({ status: 404 });
      expect(
        await refusal(
          bob.client.setOrganisationMember(created.id, dave.id, { role: "owner" as unknown as "member" }),
        ),
      ).toMatchObject({ status: 400, field: "body.role" });
      expect(await refusal(bob.client.createOrganisation({ title: " " }))).toMatchObject({
        status: 400,
        field: "title",
      });

      // A member may leave; the last manager may not (nobody could manage it any more).
      await carol.client.removeOrganisationMember(created.id, carol.id);
      expect((await bob.client.getOrganisation(created.id)).members.map((member) => member.personId)).toEqual(
        [bob.id],
      );
      expect((await refusal(carol.client.getOrganisation(created.id))).status).toBe(403);
      const lastManager = await refusal(bob.client.removeOrganisationMember(created.id, bob.id));
      expect(lastManager.status).toBe(409);
      expect(lastManager.message).toContain("last manager");
      const demoted = await refusal(bob.client.setOrganisationMember(created.id, bob.id, { role: "member" }));
      expect(demoted.status).toBe(409);

      // With a second manager, the first may go.
      await bob.client.setOrganisationMember(created.id, dave.id, { role: "manager" });
      await bob.client.removeOrganisationMember(created.id, bob.id);
      expect((await dave.client.getOrganisation(created.id)).members).toEqual([
        expect.objectContaining({ personId: dave.id, role: "manager" }),
      ]);
      expect((await refusal(bob.client.removeOrganisationMember(created.id, dave.id))).status).toBe(403);
      expect((await refusal(dave.client.removeOrganisationMember(created.id, carol.id))).status).toBe(404);
    });
  });
}
