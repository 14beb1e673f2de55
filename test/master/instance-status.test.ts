import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, refusal, startHttpsMaster } from "./https-master.js";

// A report applies to the version (timestamp) of the instance the node deployed: after a new
// request, the old report must not make the new version look ready, or in error.

const RELEASE = "https://example.com/software/web/software.cfg";

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `instance status follows the requested version, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let owner: MasterClient;
    let node: { id: string; client: MasterClient };

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      owner = (await master.person("owner")).client;
      node = await master.node(owner, [
        "slappart0",
        "slappart1",
        "slappart2",
        "slappart3",
        "slappart4",
        "slappart5",
      ]);
    });
    afterAll(async () => {
      await master?.close();
    });

    it("is ready only once the node reported on the version requested last", async () => {
      const first = await owner.requestInstance({
        title: "blog",
        softwareReleaseUrl: RELEASE,
        parameters: { colour: "red" },
        sla: { computer_guid: node.id },
      });
      expect(first).toMatchObject({ status: "deploying", reportedTimestamp: null });
      const deployed = await node.client.reportInstance(first.id, {
        state: "started",
        timestamp: first.timestamp,
      });
      expect(deployed).toMatchObject({ status: "ready", reportedTimestamp: first.timestamp });

      const second = await owner.requestInstance({
        title: "blog",
        softwareReleaseUrl: RELEASE,
        parameters: { colour: "blue" },
      });
      expect(second.timestamp).toBeGreaterThan(first.timestamp);
      expect(second).toMatchObject({
        status: "deploying",
        reportedState: "started",
        reportedTimestamp: first.timestamp,
      });
      // The desired state the node reads carries the new timestamp it must report with.
      const desired = await node.client.desiredState(node.id);
      const placed = desired.partitions.find((partition) => partition.instance?.id === first.id);
      expect(placed?.instance?.timestamp).toBe(second.timestamp);

      // The node finishes deploying the old version after the new request: refused as stale.
      const stale = await refusal(
        node.client.reportInstance(first.id, { state: "started", timestamp: first.timestamp }),
      );
      expect(stale).toMatchObject({ status: 409, kind: "conflict" });
      expect(stale.message).toContain("stale");
      expect(stale.message).toContain(String(second.timestamp));
      expect(await owner.getInstance(first.id)).toMatchObject({
        status: "deploying",
        reportedTimestamp: first.timestamp,
      });

      const redeployed = await node.client.reportInstance(first.id, {
        state: "started",
        timestamp: second.timestamp,
      });
      expect(redeployed).toMatchObject({ status: "ready", reportedTimestamp: second.timestamp });
    });

    it("does not show an old version's error as the new version's", async () => {
      const first = await owner.requestInstance({
        title: "shop",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      const failed = await node.client.reportInstance(first.id, {
        state: "error",
        errorLog: "promise check-port failed",
        timestamp: first.timestamp,
      });
      expect(failed).toMatchObject({ status: "error", errorLog: "promise check-port failed" });

      const fixed = await owner.requestInstance({
        title: "shop",
        softwareReleaseUrl: RELEASE,
        parameters: { port: "8081" },
      });
      expect(fixed.status).toBe("deploying");
      // The old version's deployment fails again, late: it says nothing about the new version.
      const late = await refusal(
        node.client.reportInstance(first.id, {
          state: "error",
          errorLog: "still the old port",
          timestamp: first.timestamp,
        }),
      );
      expect(late.status).toBe(409);
      expect(await owner.getInstance(first.id)).toMatchObject({
        status: "deploying",
        errorLog: "promise check-port failed",
      });

      const stoppedRequest = await owner.requestInstance({
        title: "shop",
        softwareReleaseUrl: RELEASE,
        parameters: { port: "8081" },
        state: "stopped",
      });
      expect(stoppedRequest.timestamp).toBeGreaterThan(fixed.timestamp);
      expect(stoppedRequest.status).toBe("deploying");
      const stopped = await node.client.reportInstance(first.id, {
        state: "stopped",
        timestamp: stoppedRequest.timestamp,
      });
      expect(stopped).toMatchObject({ status: "ready", errorLog: null });
    });

    it("refuses a report naming a timestamp the master never requested", async () => {
      const instance = await owner.requestInstance({
        title: "wiki",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      const future = await refusal(
        node.client.reportInstance(instance.id, { state: "started", timestamp: instance.timestamp + 1 }),
      );
      expect(future.status).toBe(409);
      expect(future.message).toContain("never requested");
      expect((await owner.getInstance(instance.id)).status).toBe("deploying");
      const negative = await refusal(
        node.client.reportInstance(instance.id, { state: "started", timestamp: -1 }),
      );
      expect(negative).toMatchObject({ status: 400, field: "body.timestamp" });
    });

    it("takes a report without a timestamp (SLAP style) as being about the current version", async () => {
      const instance = await owner.requestInstance({
        title: "forum",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      const reported = await node.client.reportInstance(instance.id, { state: "started" });
      expect(reported).toMatchObject({ status: "ready", reportedTimestamp: instance.timestamp });

      const updated = await owner.requestInstance({
        title: "forum",
        softwareReleaseUrl: RELEASE,
        parameters: { theme: "dark" },
      });
      expect(updated.status).toBe("deploying");
      // The classic SLAP call of an unmodified slapos node: form fields, no timestamp.
      const partition = (await owner.getInstance(instance.id)).partitionReference ?? "";
      const answer = await master.slap(node.client, "startedComputerPartition", {
        computer_id: node.id,
        computer_partition_id: partition,
      });
      expect(answer.status).toBe(200);
      expect(await owner.getInstance(instance.id)).toMatchObject({
        status: "ready",
        reportedTimestamp: updated.timestamp,
      });
    });

    it("makes a shared instance ready once its host publishes for its current version", async () => {
      const host = await owner.requestInstance({
        title: "frontend",
        softwareReleaseUrl: RELEASE,
        softwareType: "frontend",
        sla: { computer_guid: node.id },
      });
      const shared = await owner.requestInstance({
        title: "my-site",
        softwareReleaseUrl: RELEASE,
        softwareType: "frontend",
        shared: true,
        parameters: { backend: "http://a" },
      });
      expect(shared).toMatchObject({ hostInstanceId: host.id, status: "deploying" });
      const credentials = await node.client.instanceCredentials(host.id);
      const asHost = master.client(credentials.certificate, credentials.privateKey);
      const published = await asHost.publishConnectionParameters(shared.id, { url: "https://cdn/a" });
      expect(published).toMatchObject({ status: "ready", reportedTimestamp: shared.timestamp });

      const changed = await owner.requestInstance({
        title: "my-site",
        softwareReleaseUrl: RELEASE,
        softwareType: "frontend",
        shared: true,
        parameters: { backend: "http://b" },
      });
      expect(changed).toMatchObject({ status: "deploying", connectionParameters: { url: "https://cdn/a" } });
      // The host serves the new parameters under the same URL: publishing it again is the report.
      const republished = await asHost.publishConnectionParameters(shared.id, { url: "https://cdn/a" });
      expect(republished).toMatchObject({ status: "ready", reportedTimestamp: changed.timestamp });
    });
  });
}
