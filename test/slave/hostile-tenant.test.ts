import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Instance, MasterClient } from "../../protocol/client.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { describeWith, requires } from "../support/requirements.js";
import { INSTANCE_ROOT, NodeOnHost, waitFor as waitForNode } from "./node-on-host.js";

// A tenant's release is code the tenant chooses, run as its partition's user. This one
// (hostile-release/attack.py) attacks the node from inside its partition; a hello-web instance is
// its neighbour. Nothing root owns outside the partitions may change, nothing of the neighbour may
// leak, the neighbour keeps answering, and nothing of the attacker survives its destruction.

const HOSTILE = resolve("test/slave/hostile-release/software.cfg");
const HELLO = resolve("examples/software/hello-web/software.cfg");
/** Root's files the attacker points its links at, and where it hopes root creates files. */
const TARGETS = "/etc/slap-targets";
const TARGET_FILES = ["passwd", "shadow", "cron", "error-log", "bang"];
const RECEIVER_PORT = 9998;
const MAX_PROCESSES = 200;

const waitFor = <T>(what: string, check: () => Promise<T | undefined | null | false>, node: NodeOnHost) =>
  waitForNode(what, check, node, 90_000);

describeWith(
  [
    ...testHostRequirements,
    requires.env("SLAPOS_VENV", "the node's zc.buildout and supervisor (scripts/setup.sh)"),
  ],
  "a hostile tenant on a node",
  () => {
    let directory: string;
    let network: TestNetwork;
    let host: TestHost;
    let node: NodeOnHost;
    let running: NetworkMaster;
    let admin: MasterClient;
    let computerId: string;
    let victim: Instance;
    let attacker: Instance;
    let attackerUser: string;
    const secret = `TOPSECRET-${randomBytes(8).toString("hex")}`;
    let parameters: Record<string, string>;

    const instance = async (title: string): Promise<Instance> => {
      const found = (await admin.listInstances()).find((each) => each.title === title && !each.destroyedAt);
      if (!found) throw new Error(`no instance ${title}`);
      return found;
    };
    const request = (title: string, release: string, params: Record<string, string>, state = "started") =>
      admin.requestInstance({
        title,
        softwareReleaseUrl: release,
        parameters: params,
        state: state as "started",
        sla: { computer_guid: computerId },
      });
    const partitionPath = (each: Instance) => `${INSTANCE_ROOT}/${each.partitionReference}`;
    /** What the attacker observed, from its results/ directory. */
    const result = async (name: string) =>
      (await host.exec(`cat ${partitionPath(attacker)}/results/${name} 2>/dev/null`)).stdout;
    /** Owner, mode and content of root's files, and whether files appeared where root should never write. */
    const rootFiles = () =>
      host.execOrThrow(
        `cd ${TARGETS} && stat -c '%n %U %a %s' ${TARGET_FILES.join(" ")} && cat ${TARGET_FILES.join(" ")} && ls -A ${TARGETS} /etc/cron.d`,
      );
    const victimAnswers = async () =>
      (await node.fetchInside(victim.connectionParameters["url-ipv4"] ?? "")) !== null;
    let rootFilesBefore: string;

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-hostile-"));
      network = await TestNetwork.create();
      host = await network.addHost({ sharedReadOnly: [process.env.SLAPOS_VENV ?? ""] });
      running = await startNetworkMaster(network, directory);
      admin = running.admin;
      node = await NodeOnHost.install(
        host,
        {
          masterUrl: running.master.url,
          partitionAmount: 3,
          reportIntervalSeconds: 5,
          fullPassIntervalSeconds: 5,
          pythonEnvironment: process.env.SLAPOS_VENV ?? "",
          extraConfig: [`partition_max_processes = ${MAX_PROCESSES}`, "partition_max_memory = 512M"],
        },
        running.ca,
      );
      computerId = await node.register((await admin.createRegistrationToken()).token);
      await node.slapOrThrow("format");
      await host.execOrThrow(
        [
          `mkdir -p ${TARGETS} && chmod 755 ${TARGETS}`,
          ...TARGET_FILES.map(
            (name) => `echo "root's ${name}" > ${TARGETS}/${name} && chmod 600 ${TARGETS}/${name}`,
          ),
          "mkdir -p /etc/cron.d",
          // A receiver the attacker sends to from its neighbour's addresses: it logs who reached it.
          `nohup python3 -c '
import socket, threading
def serve(family, address):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((address, ${RECEIVER_PORT})); server.listen(16)
    while True:
        connection, peer = server.accept()
        connection.settimeout(2)
        try: data = connection.recv(200)
        except OSError: data = b""
        with open("/root/received.log", "a") as log: log.write(f"{peer[0]} {data!r}\\n")
        connection.close()
threading.Thread(target=serve, args=(socket.AF_INET, "${host.ipv4}"), daemon=True).start()
serve(socket.AF_INET6, "${host.ipv6}")
' > /root/receiver.out 2>&1 < /dev/null &`,
        ].join("\n"),
      );
      rootFilesBefore = await rootFiles();
      await node.startAgent();
      for (const url of [HELLO, HOSTILE]) await admin.supply(computerId, url);
      await request("neighbour", HELLO, { port: "8090" });
      victim = await waitFor(
        "the neighbour started",
        async () => {
          const current = await instance("neighbour");
          return current.reportedState === "started" && current.connectionParameters["url-ipv4"]
            ? current
            : null;
        },
        node,
      );
      // The neighbour's secret, 0600 in its own partition.
      const victimUser = (await host.execOrThrow(`stat -c %U ${partitionPath(victim)}`)).trim();
      await host.execOrThrow(
        `setpriv --reuid=${victimUser} --regid=${victimUser} --init-groups -- sh -c 'umask 077 && echo "{\\"stolen\\": \\"${secret}\\"}" > ${partitionPath(victim)}/secret.json'`,
      );
      const layout = (await admin.getComputer(computerId)).partitions.find(
        (each) => each.reference === victim.partitionReference,
      );
      const address = (ipv6: boolean) =>
        layout?.addresses.find((each) => each.address.includes(":") === ipv6)?.address ?? "";
      parameters = {
        targets: TARGETS,
        secret: `${partitionPath(victim)}/secret.json`,
        "victim-ipv4": address(false),
        "victim-ipv6": address(true),
        "receiver-ipv4": host.ipv4,
        "receiver-ipv6": host.ipv6,
        "receiver-port": String(RECEIVER_PORT),
      };
    }, 300_000);

    afterAll(async () => {
      await node?.killAgent();
      await running?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 120_000);

    it("plants links where root writes and reads: root replaces them, follows none, and sends no secret anywhere", async () => {
      await request("attacker", HOSTILE, { ...parameters, phase: "links" });
      attacker = await waitFor(
        "the attacker placed",
        async () => {
          const current = await instance("attacker");
          return current.partitionReference ? current : null;
        },
        node,
      );
      attackerUser = (await host.execOrThrow(`stat -c %U ${partitionPath(attacker)}`)).trim();
      // The first deployment plants the links; the next ones go through every one of them.
      const deployments = async () =>
        Number(
          (
            await host.exec(
              `grep -c '"partition":"${attacker.partitionReference}".*deploying instance' /var/log/slap-agent.log`,
            )
          ).stdout,
        );
      // (An agent that followed the links would succeed instead, and publish what it read.)
      await waitFor(
        "three deployments of the attacker",
        async () => (await deployments()) >= 3 || (await instance("attacker")).reportedState === "started",
        node,
      );
      expect(await rootFiles()).toBe(rootFilesBefore);
      expect((await host.exec(`ls ${TARGETS}/log`)).exitCode).not.toBe(0);
      const everything = JSON.stringify(await admin.listInstances());
      expect(everything).not.toContain(secret);
      expect(await host.execOrThrow("cat /var/log/slap-agent.log")).not.toContain(secret);
      const current = await instance("attacker");
      expect(current.reportedState).toBe("error");
      expect(current.errorLog).toMatch(/\.slap-publish\.json is a symbolic link/);
    });

    it("runs hostile services: no cross-partition read, send or listener, a bounded fork bomb and memory hog, the neighbour answering", async () => {
      await request("attacker", HOSTILE, { ...parameters, phase: "services" });
      await waitFor(
        "the attacker's services running",
        async () =>
          (await result("bomb")) &&
          (await result("send")) &&
          (await result("listen")) &&
          (await result("read")),
        node,
      );
      // The neighbour answers all along the attack.
      for (let round = 0; round < 10; round += 1) {
        expect(await victimAnswers()).toBe(true);
      }
      const bomb = JSON.parse(await result("bomb")) as { children: number };
      expect(bomb.children).toBeLessThan(MAX_PROCESSES);
      await waitFor(
        "the memory hog killed",
        async () => !(await host.exec(`pgrep -u ${attackerUser} -f 'service hog'`)).stdout.trim(),
        node,
      );
      expect(await result("hog")).toBe("allocating");
      expect(await result("read")).toMatch(/^denied/);
      // Sent from the neighbour's addresses: nothing arrived.
      const received = (await host.exec("cat /root/received.log 2>/dev/null")).stdout;
      expect(received).not.toContain("FROM-ATTACKER");
      expect(Object.values(JSON.parse(await result("send")) as Record<string, string>)).toEqual([
        expect.stringMatching(/^blocked/),
        expect.stringMatching(/^blocked/),
      ]);
      // Listening on the neighbour's addresses: nobody receives what it serves.
      for (const url of [`${parameters["victim-ipv4"]}`, `[${parameters["victim-ipv6"]}]`]) {
        const answer = await host.exec(`curl -sS -g --max-time 3 telnet://${url}:9999 < /dev/null`);
        expect(answer.stdout).not.toContain("STOLEN");
      }
      // The watchdog banged for the service that exited, through no link.
      await waitFor("the watchdog's bang", async () => (await result("exited")) === "yes", node);
      expect(await rootFiles()).toBe(rootFilesBefore);
      expect(await victimAnswers()).toBe(true);
    });

    it("takes back a .slapos-resource its user rewrote to claim the neighbour's address", async () => {
      const resource = `${partitionPath(attacker)}/.slapos-resource`;
      const original = await host.execOrThrow(`cat ${resource}`);
      const forged = original.replace(
        /"addr": "[0-9a-f:]+:[0-9a-f:]+"/,
        `"addr": "${parameters["victim-ipv6"]}"`,
      );
      expect(forged).not.toBe(original);
      await host.execOrThrow(
        `setpriv --reuid=${attackerUser} --regid=${attackerUser} --init-groups -- sh -c 'rm -f ${resource} && cat > ${resource}' <<'EOF'\n${forged}\nEOF`,
      );
      await node.slapOrThrow("format");
      expect(await host.execOrThrow(`cat ${resource}`)).toBe(original);
      expect((await host.execOrThrow(`stat -c %U ${resource}`)).trim()).toBe("root");
    });

    it("leaves nothing of the attacker running once destroyed, and the neighbour still deploys and is destroyed", async () => {
      expect((await host.exec(`pgrep -u ${attackerUser} -f 'sleep 60[01]'`)).stdout.trim()).not.toBe("");
      await request("attacker", HOSTILE, { ...parameters, phase: "services" }, "destroyed");
      await waitFor(
        "the attacker destroyed",
        async () =>
          !(await admin.listInstances()).some((each) => each.title === "attacker" && !each.destroyedAt),
        node,
      );
      const left = await host.exec(
        `for pid in $(pgrep -u ${attackerUser}); do [ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/$$/ns/mnt)" ] && ps -o pid=,args= -p $pid; done; true`,
      );
      expect(left.stdout.trim()).toBe("");
      expect(await rootFiles()).toBe(rootFilesBefore);
      // The legitimate twin: redeployed with a new greeting, then destroyed as before.
      await request("neighbour", HELLO, { port: "8090", greeting: "Still here" });
      await waitFor(
        "the neighbour serving its new greeting",
        async () =>
          (await node.fetchInside(victim.connectionParameters["url-ipv4"] ?? ""))?.includes("Still here"),
        node,
      );
      await request("neighbour", HELLO, { port: "8090" }, "destroyed");
      await waitFor(
        "the neighbour destroyed",
        async () =>
          !(await admin.listInstances()).some((each) => each.title === "neighbour" && !each.destroyedAt),
        node,
      );
      expect((await host.exec(`ls -A ${partitionPath(victim)}`)).stdout.trim()).toBe(".slapos-resource");
    });
  },
);
