import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { RunningMaster } from "../../master/server.js";
import type { Instance, MasterClient } from "../../protocol/client.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { describeWith, requires } from "../support/requirements.js";
import { INSTANCE_ROOT, NodeOnHost, SOFTWARE_ROOT, waitFor } from "./node-on-host.js";

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const PARTITIONS = 10;

describeWith(
  [
    ...testHostRequirements,
    requires.env("SLAPOS_VENV", "the node's zc.buildout and supervisor (scripts/setup.sh)"),
  ],
  "the slap agent on a test host, with real buildout and supervisord",
  () => {
    let directory: string;
    let network: TestNetwork;
    let host: TestHost;
    let node: NodeOnHost;
    let master: RunningMaster;
    let admin: MasterClient;
    let running: NetworkMaster;
    let masterPort: number;
    let computerId: string;

    const startTestMaster = async (port = 0) => {
      running = await startNetworkMaster(network, directory, port);
      master = running.master;
      admin = running.admin;
    };
    const instance = async (title: string): Promise<Instance> => {
      const found = (await admin.listInstances()).find(
        (candidate) => candidate.title === title && !candidate.destroyedAt,
      );
      if (!found) throw new Error(`no instance ${title}`);
      return found;
    };
    const request = (
      title: string,
      parameters: Record<string, string>,
      state: "started" | "stopped" | "destroyed" = "started",
      release = RELEASE,
    ) =>
      admin.requestInstance({
        title,
        softwareReleaseUrl: release,
        parameters,
        state,
        sla: { computer_guid: computerId },
      });
    const startedWithUrl = (title: string) =>
      waitFor(
        `${title} started with its URLs published`,
        async () => {
          const current = await instance(title);
          return current.reportedState === "started" && current.connectionParameters["url-ipv4"]
            ? current
            : null;
        },
        node,
      );
    /** Owner and PID of each of a partition's web servers, from supervisord. */
    const servers = async (reference: string) => {
      const status = await host.exec(
        `${process.env.SLAPOS_VENV}/bin/supervisorctl -c ${INSTANCE_ROOT}/etc/supervisord.conf status`,
      );
      const pids = [
        ...status.stdout.matchAll(
          new RegExp(`^${reference}:(http-ipv[46])-on-watch\\s+RUNNING\\s+pid (\\d+)`, "gm"),
        ),
      ];
      const result: Record<string, { pid: number; user: string }> = {};
      for (const [, name, pid] of pids) {
        const user = (await host.execOrThrow(`ps -o user= -p ${pid}`)).trim();
        result[name ?? ""] = { pid: Number(pid), user };
      }
      return result;
    };

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-agent-"));
      network = await TestNetwork.create();
      host = await network.addHost({ sharedReadOnly: [process.env.SLAPOS_VENV ?? ""] });
      await startTestMaster();
      masterPort = Number(new URL(master.url).port);
      node = await NodeOnHost.install(
        host,
        {
          masterUrl: master.url,
          partitionAmount: PARTITIONS,
          reportIntervalSeconds: 2,
          pythonEnvironment: process.env.SLAPOS_VENV ?? "",
        },
        running.ca,
      );
      const { token } = await admin.createRegistrationToken();
      computerId = await node.register(token);
    }, 120_000);
    afterAll(async () => {
      await running?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("formats 10 partitions and sends their layout to the master", async () => {
      await node.slapOrThrow("format");
      const computer = await admin.getComputer(computerId);
      expect(computer.partitions).toHaveLength(PARTITIONS);
      for (const partition of computer.partitions) {
        expect(partition.addresses.map((address) => address.address.includes(":"))).toEqual(
          expect.arrayContaining([true, false]),
        );
      }
      const users = await host.execOrThrow("getent passwd slapuser0 slapuser9 slapsoft | cut -d: -f1");
      expect(users.trim().split("\n")).toEqual(["slapuser0", "slapuser9", "slapsoft"]);
    });

    it("installs a supplied release with buildout and deploys requested instances under supervisord", async () => {
      await node.startAgent();
      await admin.supply(computerId, RELEASE);
      await request("web-a", { greeting: "Bonjour", port: "8081" });
      await request("web-b", { port: "8082" });
      const a = await startedWithUrl("web-a");
      const b = await startedWithUrl("web-b");
      expect((await admin.getComputer(computerId)).software).toEqual([
        expect.objectContaining({ url: RELEASE, reportedState: "available" }),
      ]);
      for (const [current, greeting] of [
        [a, "Bonjour"],
        [b, "Hello"],
      ] as const) {
        // The agent reports on the version it deployed, which makes the instance ready.
        expect(current).toMatchObject({ status: "ready", reportedTimestamp: current.timestamp });
        const ipv4 = current.connectionParameters["url-ipv4"] ?? "";
        const ipv6 = current.connectionParameters["url-ipv6"] ?? "";
        expect(await node.fetchInside(ipv4)).toBe(`${greeting} from ${current.title}`);
        expect(await node.fetchInside(ipv6)).toBe(`${greeting} from ${current.title}`);
        const processes = await servers(current.partitionReference ?? "");
        const owner = `slapuser${(current.partitionReference ?? "").replace("slappart", "")}`;
        expect(processes["http-ipv4"]?.user).toBe(owner);
        expect(processes["http-ipv6"]?.user).toBe(owner);
      }
    });

    it("reports each partition's CPU, memory, disk and network use, which the bill shows", async () => {
      const a = await instance("web-a");
      for (let request = 0; request < 20; request += 1) {
        await node.fetchInside(a.connectionParameters["url-ipv6"] ?? "");
      }
      const bill = await waitFor(
        "usage of web-a in the bill",
        async () => {
          const current = await admin.bill(
            a.ownerId,
            new Date(Date.now() - 3_600_000),
            new Date(Date.now() + 60_000),
          );
          const line = current.lines.find((candidate) => candidate.instanceId === a.id);
          return line && line.usage.networkRxBytes > 0 && line.usage.maxDiskBytes > 0 ? line : null;
        },
        node,
      );
      expect(bill.usage.cpuSeconds).toBeGreaterThan(0);
      expect(bill.usage.maxMemoryBytes).toBeGreaterThan(1_000_000);
      expect(bill.usage.networkTxBytes).toBeGreaterThan(0);
    });

    it("keeps partitions apart: a partition user cannot read another partition, signal its processes or write the software", async () => {
      const a = await instance("web-a");
      const b = await instance("web-b");
      const userA = `slapuser${(a.partitionReference ?? "").replace("slappart", "")}`;
      const otherPid = (await servers(b.partitionReference ?? ""))["http-ipv4"]?.pid;
      const as = (command: string) =>
        host.exec(`setpriv --reuid=${userA} --regid=${userA} --init-groups -- sh -c '${command}'`);
      expect((await as(`ls ${INSTANCE_ROOT}/${b.partitionReference}`)).exitCode).not.toBe(0);
      expect((await as(`kill -0 ${otherPid}`)).exitCode).not.toBe(0);
      expect((await as(`touch ${SOFTWARE_ROOT}/intruder`)).exitCode).not.toBe(0);
      expect((await as(`ls ${INSTANCE_ROOT}/${a.partitionReference}`)).exitCode).toBe(0);
    });

    it("stops, starts and destroys an instance, freeing its partition", async () => {
      const before = await instance("web-b");
      await request("web-b", { port: "8082" }, "stopped");
      await waitFor("web-b stopped", async () => (await instance("web-b")).reportedState === "stopped", node);
      expect(await node.fetchInside(before.connectionParameters["url-ipv4"] ?? "")).toBeNull();
      await request("web-b", { port: "8082" }, "started");
      await waitFor(
        "web-b answering again",
        async () => node.fetchInside(before.connectionParameters["url-ipv4"] ?? ""),
        node,
      );
      await request("web-b", { port: "8082" }, "destroyed");
      await waitFor(
        "web-b destroyed",
        async () => !(await admin.listInstances()).some((i) => i.title === "web-b" && !i.destroyedAt),
        node,
      );
      const partition = (await admin.getComputer(computerId)).partitions.find(
        (p) => p.reference === before.partitionReference,
      );
      expect(partition).toMatchObject({ state: "free", instanceId: null });
      expect((await host.execOrThrow(`ls -A ${INSTANCE_ROOT}/${before.partitionReference}`)).trim()).toBe(
        ".slapos-resource",
      );
      expect(await servers(before.partitionReference ?? "")).toEqual({});
    });

    it("bangs and restarts a watched service that exits", async () => {
      const a = await instance("web-a");
      const pid = (await servers(a.partitionReference ?? ""))["http-ipv6"]?.pid;
      await host.execOrThrow(`kill -KILL ${pid}`);
      const restarted = await waitFor(
        "the killed service running again",
        async () => {
          const now = (await servers(a.partitionReference ?? ""))["http-ipv6"]?.pid;
          return now && now !== pid ? now : null;
        },
        node,
      );
      expect(restarted).not.toBe(pid);
      expect((await instance("web-a")).timestamp).toBeGreaterThan(a.timestamp);
    });

    it("reports a release whose buildout fails with its log tail, writes no .completed, and leaves other partitions alone", async () => {
      // On the host, where the node reads it: a release whose buildout fails.
      const broken = "/opt/releases/broken.cfg";
      await host.execOrThrow(
        `mkdir -p /opt/releases && printf '[buildout]\\nparts = broken\\n\\n[broken]\\nrecipe = slapos.recipe.build\\ninstall = raise RuntimeError("this release is broken on purpose")\\n' > ${broken}`,
      );
      await admin.supply(computerId, broken);
      const failed = await waitFor(
        "the broken release in error",
        async () =>
          (await admin.getComputer(computerId)).software.find(
            (s) => s.url === broken && s.reportedState === "error",
          ),
        node,
      );
      expect(failed.errorLog).toContain("this release is broken on purpose");
      const listing = await host.execOrThrow(`ls -A ${SOFTWARE_ROOT}/*/ | grep -c '^.completed$' || true`);
      expect(listing.trim()).toBe("1");
      const a = await instance("web-a");
      expect(await node.fetchInside(a.connectionParameters["url-ipv4"] ?? "")).toContain("from web-a");
    });

    it("converges after the agent is killed during a build and during a deploy", async () => {
      // hello-web with a 4 s build step and a 3 s instance step: windows to kill the agent in.
      const slow = "/opt/releases/slow.cfg";
      await host.execOrThrow(`mkdir -p /opt/releases && cat > ${slow} <<'EOF'
[buildout]
extends = ${RELEASE}
parts = slow instance-profile slow-instance-profile

[slow]
recipe = slapos.recipe.build
install =
  import os, time
  time.sleep(4)
  os.makedirs(options["location"])

[instance-profile]
output = \${buildout:directory}/instance-base.cfg

[slow-instance-profile]
recipe = slapos.recipe.template
output = \${buildout:directory}/instance.cfg
inline =
  [buildout]
  extends = \${instance-profile:output}
  parts += slow
  [slow]
  recipe = slapos.recipe.build
  install =
    import os, time
    time.sleep(3)
    os.makedirs(options["location"])
EOF`);
      await admin.supply(computerId, slow);
      await request("web-slow", { port: "8084" }, "started", slow);
      // Its buildout running: the agent records the build's process group while it runs.
      await waitFor(
        "the slow release's buildout running",
        async () => (await host.exec(`ls ${INSTANCE_ROOT}/var/run/slap-build-*.pid`)).exitCode === 0,
        node,
      );
      expect((await admin.getComputer(computerId)).software.find((s) => s.url === slow)?.reportedState).toBe(
        "building",
      );
      await node.killAgent();
      await node.startAgent();
      const partition = (await waitFor(
        "web-slow placed",
        async () => (await instance("web-slow")).partitionReference,
        node,
      )) as string;
      await waitFor(
        "web-slow deploying",
        async () =>
          (await host.exec(`test -e ${INSTANCE_ROOT}/var/run/slap-buildout-${partition}.pid`)).exitCode === 0,
        node,
      );
      await node.killAgent();
      expect((await host.exec(`test -e ${INSTANCE_ROOT}/${partition}/.timestamp`)).exitCode).not.toBe(0);
      await node.startAgent();
      const started = await startedWithUrl("web-slow");
      expect(await node.fetchInside(started.connectionParameters["url-ipv4"] ?? "")).toBe(
        "Hello from web-slow",
      );
      const builds = await host.execOrThrow(`ls -A ${SOFTWARE_ROOT}/*/ | grep -c '^.completed$'`);
      expect(builds.trim()).toBe("2");
    });

    it("keeps instances running without the master, and starts them from the cached state after a node restart", async () => {
      const a = await instance("web-a");
      const url = a.connectionParameters["url-ipv4"] ?? "";
      await running.close();
      expect(await node.fetchInside(url)).toContain("from web-a");
      await node.killAgent();
      await host.execOrThrow(
        `pid=$(cat ${INSTANCE_ROOT}/var/run/supervisord.pid); kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done`,
      );
      expect(await node.fetchInside(url)).toBeNull();
      await node.startAgent();
      expect(
        await waitFor("web-a answering from the cached state", () => node.fetchInside(url), node),
      ).toContain("from web-a");
      await startTestMaster(masterPort);
      await request("web-c", { port: "8083" });
      await startedWithUrl("web-c");
    });
  },
);
