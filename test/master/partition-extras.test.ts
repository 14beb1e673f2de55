import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, refusal, startHttpsMaster } from "./https-master.js";

// A partition's extras (routable IPv4, block device) are the master's: set by the computer's
// owner, given to the node in its desired state, and never overwritten by the node's uploads.

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `partition extras set through the master, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let owner: MasterClient;
    let stranger: MasterClient;
    let node: { id: string; client: MasterClient };
    let otherNode: { id: string; client: MasterClient };

    const extrasOf = async (computer: { id: string }, reference: string) =>
      (await owner.getComputer(computer.id)).partitions.find((partition) => partition.reference === reference)
        ?.extras;

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      owner = (await master.person("owner")).client;
      stranger = (await master.person("stranger")).client;
      node = await master.node(owner, ["slappart0", "slappart1"]);
      otherNode = await master.node(owner, ["slappart0"]);
    });
    afterAll(async () => {
      await master?.close();
    });

    it("sets and clears a partition's extras, bumping the desired state only on a change", async () => {
      const before = await node.client.desiredState(node.id);
      const set = await owner.configurePartition(node.id, "slappart1", {
        routableIpv4: "203.0.113.7",
        blockDevice: "/dev/vdb",
      });
      expect(set).toMatchObject({
        reference: "slappart1",
        extras: { routableIpv4: "203.0.113.7", blockDevice: "/dev/vdb" },
        state: "free",
      });
      const after = await node.client.desiredState(node.id);
      expect(after.version).toBeGreaterThan(before.version);
      expect(after.partitions.find((partition) => partition.reference === "slappart1")?.extras).toEqual({
        routableIpv4: "203.0.113.7",
        blockDevice: "/dev/vdb",
      });

      // The same settings again change nothing, so the node is not woken for nothing.
      await owner.configurePartition(node.id, "slappart1", { routableIpv4: "203.0.113.7" });
      expect((await node.client.desiredState(node.id)).version).toBe(after.version);

      // null clears one; absent keeps the other.
      const cleared = await owner.configurePartition(node.id, "slappart1", { routableIpv4: null });
      expect(cleared.extras).toEqual({ blockDevice: "/dev/vdb" });
      expect((await node.client.desiredState(node.id)).version).toBeGreaterThan(after.version);
      await owner.configurePartition(node.id, "slappart1", { blockDevice: null });
      expect(await extrasOf(node, "slappart1")).toEqual({});
    });

    it("has the instance of a busy partition redeployed with the new extras", async () => {
      const host = await master.node(owner, ["slappart0"]);
      const instance = await owner.requestInstance({
        title: "db",
        softwareReleaseUrl: "https://example.com/software/db/software.cfg",
        sla: { computer_guid: host.id },
      });
      await host.client.reportInstance(instance.id, { state: "started", timestamp: instance.timestamp });
      await owner.configurePartition(host.id, "slappart0", { blockDevice: "/dev/vdd" });
      const after = await owner.getInstance(instance.id);
      expect(after.timestamp).toBeGreaterThan(instance.timestamp);
      expect(after.status).toBe("deploying");
      const desired = await host.client.desiredState(host.id);
      expect(desired.partitions[0]).toMatchObject({
        extras: { blockDevice: "/dev/vdd" },
        instance: { id: instance.id, timestamp: after.timestamp },
      });
    });

    it("keeps the extras when the node uploads its layout again (a re-format)", async () => {
      await owner.configurePartition(node.id, "slappart0", {
        routableIpv4: "203.0.113.8",
        blockDevice: "/dev/disk/by-id/virtio-data",
      });
      await node.client.uploadPartitions(node.id, [
        {
          reference: "slappart0",
          addresses: [{ interface: "eth0", address: "10.0.0.1", netmask: "255.255.255.255" }],
        },
        { reference: "slappart1", addresses: [] },
      ]);
      const computer = await owner.getComputer(node.id);
      expect(computer.partitions.find((partition) => partition.reference === "slappart0")).toMatchObject({
        addresses: [{ address: "10.0.0.1" }],
        extras: { routableIpv4: "203.0.113.8", blockDevice: "/dev/disk/by-id/virtio-data" },
      });
      // A layout carrying extras is refused: they are not the node's to say.
      const carrying = await refusal(
        node.client.call("PUT", `computers/${node.id}/partitions`, {
          partitions: [{ reference: "slappart0", addresses: [], extras: { routableIpv4: "203.0.113.9" } }],
        }),
      );
      expect(carrying.status).toBe(400);
      expect(carrying.message).toContain("extras");
      expect(await extrasOf(node, "slappart0")).toMatchObject({ routableIpv4: "203.0.113.8" });
    });

    it("refuses a routable IPv4 that another partition of any computer already has (409)", async () => {
      await owner.configurePartition(node.id, "slappart1", { routableIpv4: "198.51.100.20" });
      const taken = await refusal(
        owner.configurePartition(otherNode.id, "slappart0", { routableIpv4: "198.51.100.20" }),
      );
      expect(taken).toMatchObject({ status: 409, kind: "conflict" });
      expect(taken.message).toContain("198.51.100.20");
      expect(taken.message).toContain(`partition slappart1 of computer ${node.id}`);
      expect(await extrasOf(otherNode, "slappart0")).toEqual({});
      // Once cleared there, it may go elsewhere.
      await owner.configurePartition(node.id, "slappart1", { routableIpv4: null });
      const moved = await owner.configurePartition(otherNode.id, "slappart0", {
        routableIpv4: "198.51.100.20",
      });
      expect(moved.extras).toEqual({ routableIpv4: "198.51.100.20" });

      // Two owners' programs asking for one address at once: exactly one gets it.
      const outcomes = await Promise.allSettled([
        owner.configurePartition(node.id, "slappart1", { routableIpv4: "198.51.100.21" }),
        owner.configurePartition(otherNode.id, "slappart0", { routableIpv4: "198.51.100.21" }),
      ]);
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled")).toHaveLength(1);
      const [lost] = outcomes.flatMap((outcome) => (outcome.status === "rejected" ? [outcome.reason] : []));
      expect(lost).toMatchObject({ status: 409 });
    });

    it("refuses bad input naming the field, unknown partitions, and callers other than the owner", async () => {
      const badAddress = await refusal(
        owner.configurePartition(node.id, "slappart1", { routableIpv4: "300.1.2.3" }),
      );
      expect(badAddress).toMatchObject({ status: 400, field: "body.routableIpv4" });
      expect(badAddress.message).toContain("IPv4");
      for (const device of ["/etc/passwd", "/dev/../etc/shadow", "dev/vdb", "/dev/", "/dev/vd b"]) {
        const badDevice = await refusal(
          owner.configurePartition(node.id, "slappart1", { blockDevice: device }),
        );
        expect(badDevice, device).toMatchObject({ status: 400, field: "body.blockDevice" });
      }
      const unknownKey = await refusal(
        owner.call("PUT", `computers/${node.id}/partitions/slappart1`, { tap: "x" }),
      );
      expect(unknownKey.status).toBe(400);

      const missing = await refusal(
        owner.configurePartition(node.id, "slappart9", { blockDevice: "/dev/vdc" }),
      );
      expect(missing).toMatchObject({ status: 404 });
      expect(missing.message).toContain("slappart9");
      expect(await refusal(owner.configurePartition("COMP-NOPE", "slappart0", {}))).toMatchObject({
        status: 404,
      });

      expect(
        await refusal(stranger.configurePartition(node.id, "slappart1", { blockDevice: "/dev/vdc" })),
      ).toMatchObject({ status: 403 });
      // The node runs the partitions but does not decide their extras.
      expect(
        await refusal(node.client.configurePartition(node.id, "slappart1", { blockDevice: "/dev/vdc" })),
      ).toMatchObject({ status: 403 });
      // An admin may.
      const byAdmin = await master.admin.configurePartition(node.id, "slappart1", {
        blockDevice: "/dev/vdc",
      });
      expect(byAdmin.extras.blockDevice).toBe("/dev/vdc");
    });

    it("describes the endpoint in the OpenAPI document", async () => {
      const document = await master.admin.call<{ paths: Record<string, Record<string, unknown>> }>(
        "GET",
        "openapi.json",
      );
      expect(document.paths["/computers/{computerId}/partitions/{reference}"]).toHaveProperty("put");
    });
  });
}
