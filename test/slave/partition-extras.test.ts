import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Instance, MasterClient } from "../../protocol/client.js";
import { uninstall } from "../../slave-bootstrap/uninstall.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { describeWith, requires } from "../support/requirements.js";
import { INSTANCE_ROOT, NodeOnHost, waitFor } from "./node-on-host.js";

// A partition's extras set on the master reach the node: the routable IPv4 on the host's
// interface, the block device owned by the partition's user, both in the instance's files; and
// what is cleared is undone, also by an agent that was restarted meanwhile, and by an uninstall.
//
// Test hosts share this machine's /dev (they have their own mount namespace, not their own
// devices), so the test's block device lives on a tmpfs mounted over /dev/shm inside the host's
// mount namespace: a real block device node under /dev, seen by the host only.

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const ROUTABLE = "203.0.113.77";
const DEVICES = "/dev/shm";
const DEVICE = `${DEVICES}/slaptestblk`;

describeWith(
  [
    ...testHostRequirements,
    requires.env("SLAPOS_VENV", "the node's zc.buildout and supervisor (scripts/setup.sh)"),
  ],
  "partition extras applied by the slap agent on a test host",
  () => {
    let directory: string;
    let network: TestNetwork;
    let host: TestHost;
    let node: NodeOnHost;
    let running: NetworkMaster;
    let admin: MasterClient;
    let computerId: string;
    let web: Instance;
    let reference: string;

    const current = async () => admin.getInstance(web.id);
    /** Waits until the instance was deployed (and reported) after `after`, with its current timestamp. */
    const redeployed = (after: number, status: "ready" | "error" = "ready") =>
      waitFor(
        `${web.title} ${status} after timestamp ${after}`,
        async () => {
          const instance = await current();
          return instance.timestamp > after && instance.status === status ? instance : null;
        },
        node,
      );
    const routableOnInterface = async () =>
      (await host.execOrThrow("ip -4 -o address show dev eth0")).includes(`inet ${ROUTABLE}/32`);
    const deviceOwner = (path = DEVICE) => host.execOrThrow(`stat -c '%U:%G %a %F' ${path}`);
    const instanceFile = async () =>
      JSON.parse(await host.execOrThrow(`cat ${INSTANCE_ROOT}/${reference}/.slap-instance.json`));

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-extras-"));
      network = await TestNetwork.create();
      host = await network.addHost({ sharedReadOnly: [process.env.SLAPOS_VENV ?? ""] });
      running = await startNetworkMaster(network, directory);
      admin = running.admin;
      node = await NodeOnHost.install(
        host,
        {
          masterUrl: running.master.url,
          partitionAmount: 2,
          pythonEnvironment: process.env.SLAPOS_VENV ?? "",
        },
        running.ca,
      );
      computerId = await node.register((await admin.createRegistrationToken()).token);
      await node.slapOrThrow("format");
      await host.execOrThrow(`mount -t tmpfs -o mode=0755 slaptest ${DEVICES} && mknod ${DEVICE} b 7 200`);
      await node.startAgent();
      await admin.supply(computerId, RELEASE);
      const requested = await admin.requestInstance({
        title: "web-extras",
        softwareReleaseUrl: RELEASE,
        parameters: { port: "8090" },
        sla: { computer_guid: computerId },
      });
      web = await waitFor(
        "web-extras ready",
        async () => {
          const instance = await admin.getInstance(requested.id);
          return instance.status === "ready" ? instance : null;
        },
        node,
        120_000,
      );
      reference = web.partitionReference ?? "";
    }, 180_000);
    afterAll(async () => {
      await running?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("adds the routable IPv4, gives the block device to the partition's user, and redeploys with them", async () => {
      expect(await routableOnInterface()).toBe(false);
      expect(await deviceOwner()).toBe("root:root 644 block special file");
      await admin.configurePartition(computerId, reference, { routableIpv4: ROUTABLE, blockDevice: DEVICE });
      const deployed = await redeployed(web.timestamp);

      expect(await routableOnInterface()).toBe(true);
      const user = `slapuser${reference.replace("slappart", "")}`;
      expect(await deviceOwner()).toBe(`${user}:${user} 600 block special file`);
      expect(await instanceFile()).toMatchObject({ routableIpv4: ROUTABLE, blockDevice: DEVICE });
      const buildout = await host.execOrThrow(`cat ${INSTANCE_ROOT}/${reference}/buildout.cfg`);
      expect(buildout).toContain(`routable-ipv4 = ${ROUTABLE}`);
      expect(buildout).toContain(`block-device = ${DEVICE}`);
      // The partition's own user can use its device.
      expect(
        (
          await host.exec(
            `setpriv --reuid=${user} --regid=${user} --init-groups -- test -r ${DEVICE} -a -w ${DEVICE}`,
          )
        ).exitCode,
      ).toBe(0);
      web = deployed;
    });

    it("fails the instance naming a block device that is missing or not one, until it is there", async () => {
      const missing = `${DEVICES}/slaptestdisk`;
      await admin.configurePartition(computerId, reference, { blockDevice: missing });
      const failed = await redeployed(web.timestamp, "error");
      expect(failed.errorLog).toContain(`block device ${missing} of ${reference} does not exist`);
      // The device it had before is given back.
      expect(await deviceOwner()).toBe("root:disk 660 block special file");

      await host.execOrThrow(`touch ${missing}`);
      await waitFor(
        "the error about a file that is not a block device",
        async () =>
          (await current()).errorLog?.includes(
            `${missing}, the block device of ${reference}, is not a block device`,
          ),
        node,
      );
      expect((await current()).status).toBe("error");

      await host.execOrThrow(`rm ${missing} && mknod ${missing} b 7 201`);
      await waitFor(
        "web-extras ready with its new device",
        async () => (await current()).status === "ready",
        node,
      );
      const user = `slapuser${reference.replace("slappart", "")}`;
      expect(await deviceOwner(missing)).toBe(`${user}:${user} 600 block special file`);
      expect(await instanceFile()).toMatchObject({ routableIpv4: ROUTABLE, blockDevice: missing });
      web = await current();
    });

    it("undoes cleared extras, also those a restarted agent only knows from its record", async () => {
      await admin.configurePartition(computerId, reference, { blockDevice: null });
      web = await redeployed(web.timestamp);
      expect(await deviceOwner(`${DEVICES}/slaptestdisk`)).toBe("root:disk 660 block special file");
      expect(await instanceFile()).toMatchObject({ routableIpv4: ROUTABLE, blockDevice: null });
      expect(await routableOnInterface()).toBe(true);

      // Cleared while the agent is down: the master no longer names the address, the record does.
      await node.killAgent();
      const cleared = await admin.configurePartition(computerId, reference, { routableIpv4: null });
      expect(cleared.extras).toEqual({});
      expect(await routableOnInterface()).toBe(true);
      await node.startAgent();
      web = await redeployed(web.timestamp);
      expect(await routableOnInterface()).toBe(false);
      expect(await instanceFile()).toMatchObject({ routableIpv4: null, blockDevice: null });
      const buildout = await host.execOrThrow(`cat ${INSTANCE_ROOT}/${reference}/buildout.cfg`);
      expect(buildout).toMatch(/^routable-ipv4 = $/m);
      expect(JSON.parse(await host.execOrThrow(`cat ${INSTANCE_ROOT}/var/partition-extras.json`))).toEqual(
        {},
      );
    });

    it("has an uninstall remove the routable address and give the device back", async () => {
      await admin.configurePartition(computerId, reference, { routableIpv4: ROUTABLE, blockDevice: DEVICE });
      await redeployed(web.timestamp);
      expect(await routableOnInterface()).toBe(true);
      await node.killAgent();
      await uninstall({
        target: {
          host: host.ipv4,
          user: "root",
          privateKey: host.privateKey,
          hostKey: host.hostKeyFingerprint,
        },
      });
      expect(await routableOnInterface()).toBe(false);
      expect(await deviceOwner()).toBe("root:disk 660 block special file");
    });
  },
);
