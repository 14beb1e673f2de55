import { X509Certificate } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { persons, registrationTokens } from "../../master/db/schema.js";
import type { MasterClient } from "../../protocol/client.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, refusal, startHttpsMaster } from "./https-master.js";

// Identities over time: tokens that outlive their computer, certificates that reach their end,
// persons an admin removes. The attacker holds something that was once valid.

const RELEASE = "https://example.com/software/web/software.cfg";
const DAY_MS = 86_400_000;

type Party = { id: string; client: MasterClient };

const daysLeft = (certificate: string) =>
  (new Date(new X509Certificate(certificate).validTo).getTime() - Date.now()) / DAY_MS;
const serialOf = (certificate: string) => new X509Certificate(certificate).serialNumber.toUpperCase();

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `identities over time, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let alice: Party;

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      alice = await master.person("alice");
    });
    afterAll(async () => {
      await master?.close();
    });

    it("refuses a re-registration token made before its computer was deregistered", async () => {
      const node = await master.node(alice.client, []);
      const { token } = await alice.client.createRegistrationToken({ computerId: node.id });
      await alice.client.deregisterComputer(node.id);
      const refused = await refusal(master.client().register(token));
      expect(refused.status).toBe(400);
      expect(refused.field).toBe("token");
      expect(refused.message).toContain("unknown, expired or already used");
    });

    it("refuses a token for a deregistered computer even when it is still unused and unexpired", async () => {
      // A token created while the computer was being deregistered (the two committed in that
      // order) is still claimable: registration itself must refuse the deregistered computer.
      const node = await master.node(alice.client, []);
      const { token } = await alice.client.createRegistrationToken({ computerId: node.id });
      await alice.client.deregisterComputer(node.id);
      await master.master.database.db
        .update(registrationTokens)
        .set({ expiresAt: new Date(Date.now() + 3_600_000) })
        .where(eq(registrationTokens.computerId, node.id));
      const refused = await refusal(master.client().register(token));
      expect(refused.status).toBe(400);
      expect(refused.field).toBe("token");
      expect(refused.message).toContain(`computer ${node.id} was deregistered`);
      // The token was not spent by the refusal, and still registers nothing.
      expect((await refusal(master.client().register(token))).status).toBe(400);
    });

    it("renews a person's certificate: the new one works, and the old one keeps working until it expires", async () => {
      const bob = await master.person("bob-renews");
      const oldCertificate = bob.client.connection.certificate ?? "";
      const renewed = await bob.client.renewCertificate();
      expect(serialOf(renewed.certificate)).not.toBe(serialOf(oldCertificate));
      expect(daysLeft(renewed.certificate)).toBeGreaterThan(824);
      expect(new Date(renewed.expiresAt).getTime()).toBeCloseTo(
        new Date(new X509Certificate(renewed.certificate).validTo).getTime(),
        -4,
      );
      expect(renewed.caCertificate).toBe(master.admin.connection.ca);
      const renewedClient = master.client(renewed.certificate, renewed.privateKey);
      expect(await renewedClient.listComputers()).toEqual([]);
      // The old one overlaps: a client that lost the answer is not locked out.
      expect(await bob.client.listComputers()).toEqual([]);
      // The new one is recorded: it renews in turn.
      const again = await renewedClient.renewCertificate();
      expect(serialOf(again.certificate)).not.toBe(serialOf(renewed.certificate));
    });

    it("renews a computer's certificate for its node", async () => {
      const node = await master.node(alice.client, ["slappart0"]);
      const renewed = await node.client.renewCertificate();
      expect(daysLeft(renewed.certificate)).toBeGreaterThan(824);
      const renewedNode = master.client(renewed.certificate, renewed.privateKey);
      expect((await renewedNode.desiredState(node.id)).computerId).toBe(node.id);
      expect(new X509Certificate(renewed.certificate).subject).toContain(`CN=${node.id}`);
    });

    it("renews nothing for an instance, a caller without a certificate, or a revoked certificate", async () => {
      const node = await master.node(alice.client, ["slappart0"]);
      await alice.client.supply(node.id, RELEASE);
      const instance = await alice.client.requestInstance({
        title: "renewal-instance",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      const credentials = await node.client.instanceCredentials(instance.id);
      const asInstance = master.client(credentials.certificate, credentials.privateKey);
      const byInstance = await refusal(asInstance.renewCertificate());
      expect(byInstance.status).toBe(403);
      expect(byInstance.message).toContain("instance certificates are not renewed");

      expect((await refusal(master.client().renewCertificate())).status).toBe(401);

      // The old node of a rebuilt computer holds a revoked certificate: it must not get a new one.
      const { token } = await alice.client.createRegistrationToken({ computerId: node.id });
      await master.client().register(token);
      expect((await refusal(node.client.renewCertificate())).status).toBe(401);
    });

    it("lets an admin revoke a person: their certificates stop working, their computers and instances stay", async () => {
      const carol = await master.person("carol");
      const node = await master.node(carol.client, ["slappart0"]);
      await carol.client.supply(node.id, RELEASE);
      const instance = await carol.client.requestInstance({
        title: "carol-web",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      const renewed = await carol.client.renewCertificate();
      const pendingToken = (await carol.client.createRegistrationToken()).token;

      await master.admin.revokePerson(carol.id);

      for (const certificate of [carol.client, master.client(renewed.certificate, renewed.privateKey)]) {
        const refused = await refusal(certificate.listInstances());
        expect(refused.status).toBe(401);
        expect((await refusal(certificate.renewCertificate())).status).toBe(401);
      }
      const registration = await refusal(master.client().register(pendingToken));
      expect(registration.status).toBe(400);
      expect(registration.message).toContain("unknown, expired or already used");
      // Even a token that escaped expiry registers nothing for a revoked person.
      await master.master.database.db
        .update(registrationTokens)
        .set({ expiresAt: new Date(Date.now() + 3_600_000) })
        .where(eq(registrationTokens.personId, carol.id));
      const escaped = await refusal(master.client().register(pendingToken));
      expect(escaped.message).toContain("the person who created this registration token has been revoked");
      // Left for an admin to act on: the node keeps its identity, the instance keeps its partition.
      expect((await node.client.desiredState(node.id)).partitions[0]?.instance?.id).toBe(instance.id);
      expect((await master.admin.getInstance(instance.id)).computerId).toBe(node.id);
      expect((await master.admin.getComputer(node.id)).ownerId).toBe(carol.id);

      const twice = await refusal(master.admin.revokePerson(carol.id));
      expect(twice.status).toBe(409);
      expect(twice.message).toContain(`person ${carol.id} is already revoked`);
      expect((await refusal(master.admin.revokePerson("PERSON-NOBODY"))).status).toBe(404);
    });

    it("refuses revocation by a non-admin and of oneself", async () => {
      const dave = await master.person("dave");
      const refused = await refusal(dave.client.revokePerson(alice.id));
      expect(refused.status).toBe(403);
      expect(await alice.client.listComputers()).toBeDefined();

      const admin = await master.admin.createPerson({ name: "third-admin", isAdmin: true });
      const asAdmin = master.client(admin.certificate, admin.privateKey);
      const ownRevocation = await refusal(asAdmin.revokePerson(admin.personId));
      expect(ownRevocation.status).toBe(409);
      expect(ownRevocation.message).toContain("cannot revoke yourself");
      expect(await asAdmin.listComputers()).toBeDefined();
    });

    it("does not authenticate a revoked person even if a certificate of theirs escaped revocation", async () => {
      const erin = await master.person("erin");
      expect(await erin.client.listComputers()).toEqual([]);
      // Only the person is marked revoked, as if a certificate were issued in a race with it.
      await master.master.database.db
        .update(persons)
        .set({ revokedAt: new Date() })
        .where(eq(persons.id, erin.id));
      expect((await refusal(erin.client.listComputers())).status).toBe(401);
    });

    it("when two admins revoke each other at once, exactly one succeeds and an admin remains", async () => {
      const make = async (name: string) => {
        const identity = await master.admin.createPerson({ name, isAdmin: true });
        return { id: identity.personId, client: master.client(identity.certificate, identity.privateKey) };
      };
      const [first, second] = [await make("admin-one"), await make("admin-two")];
      const outcomes = await Promise.allSettled([
        first.client.revokePerson(second.id),
        second.client.revokePerson(first.id),
      ]);
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
      const survivor = outcomes[0]?.status === "fulfilled" ? first : second;
      expect(await survivor.client.listComputers()).toBeDefined();
    });
  });
}
