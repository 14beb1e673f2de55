import { copyFile, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { RunningMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { type BootstrapOptions, bootstrap, type ProgressEvent } from "../../slave-bootstrap/index.js";
import { HostKeyMismatchError } from "../../slave-bootstrap/ssh.js";
import { uninstall } from "../../slave-bootstrap/uninstall.js";
import { SUDO_USER, type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { hostProcesses, nodeLeftovers } from "../support/node-host.js";
import { describeWith, requires } from "../support/requirements.js";

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const AGENT = resolve("dist/agent/slap-node.mjs");

/**
 * Samples every process's command line until stopped, as `ps` on a test host would show it
 * (test hosts share this machine's process table): which held `secret`, and whether the
 * registration command was seen at all (so that an empty finding means something).
 */
function watchCommandLines(secret: string) {
  let stopped = false;
  let sawRegistration = false;
  const exposed = new Set<string>();
  const sample = async () => {
    while (!stopped) {
      for (const pid of await readdir("/proc")) {
        if (!/^\d+$/.test(pid)) continue;
        const line = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
        if (line.includes("slap-node.mjs node register")) sawRegistration = true;
        if (line.includes(secret)) exposed.add(line.replaceAll(secret, "<the token>"));
      }
      await new Promise((wait) => setTimeout(wait, 2));
    }
  };
  const sampling = sample();
  return {
    async stop() {
      stopped = true;
      await sampling;
      return { sawRegistration, exposed: [...exposed] };
    },
  };
}

describeWith(
  [...testHostRequirements, requires.env("SLAPOS_WHEELHOUSE", "the wheels of a node's Python environment")],
  "bootstrapping bare test hosts into nodes over SSH",
  () => {
    let directory: string;
    let network: TestNetwork;
    let hosts: TestHost[];
    let master: RunningMaster;
    let admin: MasterClient;
    let masterCa: string;
    let running: NetworkMaster;

    const options = (host: TestHost, overrides: Partial<BootstrapOptions> = {}): BootstrapOptions => ({
      target: {
        host: host.ipv4,
        user: "root",
        privateKey: host.privateKey,
        hostKey: host.hostKeyFingerprint,
      },
      masterUrl: master.url,
      masterCa,
      partitionCount: 3,
      ipv4LocalNetwork: "10.201.0.0/24",
      wheelhouse: process.env.SLAPOS_WHEELHOUSE ?? "",
      agentBundle: AGENT,
      ...overrides,
    });
    const token = async () => (await admin.createRegistrationToken()).token;
    const waitFor = async <T>(
      what: string,
      check: () => Promise<T | null | undefined | false>,
    ): Promise<T> => {
      const deadline = Date.now() + 90_000;
      while (Date.now() < deadline) {
        const value = await check();
        if (value) return value;
        await new Promise((wait) => setTimeout(wait, 250));
      }
      throw new Error(`timed out waiting for ${what}`);
    };

    const startedInstance = (title: string) =>
      waitFor(`${title} started`, async () =>
        (await admin.listInstances()).find(
          (candidate) =>
            candidate.title === title &&
            candidate.reportedState === "started" &&
            candidate.connectionParameters["url-ipv4"],
        ),
      );
    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-bootstrap-"));
      network = await TestNetwork.create();
      hosts = [];
      for (let index = 0; index < 6; index += 1) hosts.push(await network.addHost());
      running = await startNetworkMaster(network, directory);
      ({ master, admin, ca: masterCa } = running);
    }, 120_000);
    afterAll(async () => {
      await running?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("makes one host (as root) and another (through a sudo user) registered nodes that run an instance", async () => {
      const [first, second] = hosts as [TestHost, TestHost];
      const events: ProgressEvent[] = [];
      const firstToken = await token();
      const processes = watchCommandLines(firstToken);
      const asRoot = await bootstrap(options(first, { token: firstToken }), (event) =>
        events.push(event),
      ).finally(() => processes.stop());
      const throughSudo = await bootstrap(
        options(second, {
          token: await token(),
          target: {
            host: second.ipv4,
            user: SUDO_USER,
            privateKey: second.privateKey,
            hostKey: second.hostKeyFingerprint,
          },
        }),
      );
      expect(
        events.filter((event) => event.status !== "started").map((event) => [event.step, event.status]),
      ).toEqual([
        ["connect", "unchanged"],
        ["preflight", "unchanged"],
        ["node runtime", "unchanged"],
        ["python environment", "done"],
        ["agent", "done"],
        ["configuration", "done"],
        ["registration", "done"],
        ["format", "done"],
        ["agent service", "done"],
      ]);
      // The token travels on standard input: no command line on the host ever held it.
      const seen = await processes.stop();
      expect(seen.sawRegistration).toBe(true);
      expect(seen.exposed).toEqual([]);
      const tokenCommand = asRoot.commands.find((record) => record.command.includes("register"));
      expect(tokenCommand?.command).toContain("register --token-file -");
      expect(JSON.stringify(asRoot.commands)).not.toContain(firstToken);
      for (const [host, result] of [
        [first, asRoot],
        [second, throughSudo],
      ] as const) {
        const computer = await admin.getComputer(result.computerId);
        expect(computer.partitions).toHaveLength(3);
        await admin.supply(result.computerId, RELEASE);
        await admin.requestInstance({
          title: `web-${host.name}`,
          softwareReleaseUrl: RELEASE,
          parameters: { port: "8080" },
          sla: { computer_guid: result.computerId },
        });
      }
      for (const host of [first, second]) {
        const instance = await waitFor(`web-${host.name} started`, async () =>
          (await admin.listInstances()).find(
            (candidate) => candidate.title === `web-${host.name}` && candidate.reportedState === "started",
          ),
        );
        const page = await host.execOrThrow(
          `curl -sS -g --max-time 5 '${instance.connectionParameters["url-ipv4"]}'`,
        );
        expect(page).toBe(`Hello from web-${host.name}`);
      }
    });

    it("changes nothing when run again on a healthy node", async () => {
      const again = await bootstrap(options(hosts[0] as TestHost));
      expect(again.changed).toEqual([]);
      expect(again.commands.every((record) => !record.command.includes("upload"))).toBe(true);
    });

    it("upgrades the agent in place without stopping the instances", async () => {
      const first = hosts[0] as TestHost;
      const before = await hostProcesses(first, "[h]ttp.server");
      const agentBefore = await hostProcesses(first, "[s]lap-node.mjs node run");
      const newer = join(directory, "slap-node-newer.mjs");
      await copyFile(AGENT, newer);
      await writeFile(newer, "\n// a newer build\n", { flag: "a" });
      const upgraded = await bootstrap(options(first, { agentBundle: newer }));
      expect(upgraded.changed).toEqual(["agent", "agent service"]);
      await waitFor("the new agent running", async () => {
        const agents = await hostProcesses(first, "[s]lap-node.mjs node run");
        return agents.length === 1 && agents[0] !== agentBefore[0];
      });
      expect(await hostProcesses(first, "[h]ttp.server")).toEqual(before);
      expect(before).toHaveLength(2);
      expect((await bootstrap(options(first, { agentBundle: newer }))).changed).toEqual([]);
    });

    it("refuses a host whose key is not the pinned one, and changes nothing on it", async () => {
      const third = hosts[2] as TestHost;
      const wrong = (hosts[0] as TestHost).hostKeyFingerprint;
      const attempt = bootstrap(
        options(third, { token: await token(), target: { ...options(third).target, hostKey: wrong } }),
      );
      await expect(attempt).rejects.toBeInstanceOf(HostKeyMismatchError);
      expect((await third.exec("ls /opt/slapos /etc/opt/slapos")).exitCode).not.toBe(0);
    });

    it("refuses a registration token the master does not know, saying so", async () => {
      const third = hosts[2] as TestHost;
      await expect(bootstrap(options(third, { token: "not-a-token" }))).rejects.toThrow(
        "the registration token is unknown, expired or already used; ask for a new one",
      );
      expect((await third.exec("test -e /etc/opt/slapos/ssl/computer.crt")).exitCode).not.toBe(0);
    });

    it("copies this machine's Node to a host that has none, and runs the agent on it", async () => {
      const third = hosts[2] as TestHost;
      // This host's mounts are its own: its Node disappears for it alone.
      await third.execOrThrow("mount --bind /dev/null /usr/bin/node");
      expect((await third.exec("node --version")).exitCode).not.toBe(0);
      const events: ProgressEvent[] = [];
      const result = await bootstrap(options(third, { token: await token() }), (event) => events.push(event));
      expect(events.find((event) => event.step === "node runtime" && event.status !== "started")).toEqual({
        step: "node runtime",
        status: "done",
        detail: `copied ${process.version}`,
      });
      expect((await admin.getComputer(result.computerId)).partitions).toHaveLength(3);
      const agents = await hostProcesses(third, "[s]lap-node.mjs node run");
      expect(agents).toHaveLength(1);
      expect(await third.execOrThrow(`tr '\\0' ' ' < /proc/${agents[0]}/cmdline`)).toMatch(
        /^\/opt\/slapos\/node\/bin\/node /,
      );
      const again = await bootstrap(options(third));
      expect(again.changed).toEqual([]);
    });

    it.each([
      { point: "while the Python environment installs", hostIndex: 4, marker: "test -d /opt/slapos/wheels" },
      { point: "while format runs", hostIndex: 5, marker: "test -d /srv/slapgrid/slappart0" },
    ])(
      "finishes on a re-run after the SSH connection dropped $point, through the slap CLI",
      async ({ hostIndex, marker }) => {
        const host = hosts[hostIndex] as TestHost;
        const key = join(directory, `${host.name}.key`);
        await writeFile(key, host.privateKey, { mode: 0o600 });
        await writeFile(join(directory, "ca.pem"), masterCa);
        const cli = (extra: string[]) =>
          execa(
            "node",
            [
              resolve("dist/cli/main.js"),
              "bootstrap",
              `ssh://root@${host.ipv4}`,
              "--master",
              master.url,
              "--ca",
              join(directory, "ca.pem"),
              "--identity",
              key,
              "--host-key",
              host.hostKeyFingerprint,
              "--partitions",
              "3",
              "--ipv4-network",
              "10.201.0.0/24",
              ...extra,
            ],
            { reject: false, all: true },
          );
        const registrationToken = await token();
        const interrupted = cli(["--token", registrationToken]);
        await waitFor("the step to interrupt", async () => (await host.exec(marker)).exitCode === 0);
        // Every SSH session of this host, killed from its side (only this host's: test hosts share
        // the kernel's process table).
        const sessions = await hostProcesses(host, "[s]shd: root@");
        await host.exec(`kill ${sessions.join(" ")}`);
        const failed = await interrupted;
        expect(failed.exitCode, failed.all).not.toBe(0);
        const finished = await cli(["--token", registrationToken]);
        expect(finished.exitCode, finished.all).toBe(0);
        const { computerId } = JSON.parse(finished.stdout.trim().split("\n").at(-1) ?? "{}") as {
          computerId: string;
        };
        expect((await admin.getComputer(computerId)).partitions).toHaveLength(3);
        const again = await cli([]);
        expect(JSON.parse(again.stdout.trim().split("\n").at(-1) ?? "{}")).toMatchObject({
          computerId,
          changed: [],
        });
      },
    );

    it("rebuilds a lost node on a fresh host as the same computer, with its instances and their data", async () => {
      const [first, , , fresh] = hosts as [TestHost, TestHost, TestHost, TestHost];
      const lost = await bootstrap(options(first));
      const title = `web-${first.name}`;
      const before = await startedInstance(title);
      // The instance keeps data (files it serves); the operator backs them up with the release's script.
      const partition = `/srv/slapgrid/${before.partitionReference}`;
      const user = (before.partitionReference ?? "").replace("slappart", "slapuser");
      await first.execOrThrow(
        `runuser -u ${user} -- sh -c 'echo kept across hosts > ${partition}/srv/www/files/note.txt'`,
      );
      const archive = await first.execOrThrow(`${partition}/bin/backup-files | base64 -w0`);
      const backups = createServer((request, response) => {
        const body =
          request.url === `/backups/${before.id}/files.tar.gz` ? Buffer.from(archive, "base64") : null;
        response.writeHead(body ? 200 : 404).end(body ?? "no such backup");
      });
      await new Promise<void>((listening) => backups.listen(0, network.gatewayIpv4, listening));
      const { port } = backups.address() as AddressInfo;
      try {
        // The host is lost: everything of ours on it is gone.
        await uninstall({ target: options(first).target });
        expect(await nodeLeftovers(first)).toBe("");
        const { token: rebuildToken } = await admin.createRegistrationToken({ computerId: lost.computerId });
        const rebuilt = await bootstrap(
          options(fresh, {
            token: rebuildToken,
            computerId: lost.computerId,
            restoreFrom: `http://${network.gatewayIpv4}:${port}/backups`,
          }),
        );
        expect(rebuilt.computerId).toBe(lost.computerId);
        const back = await waitFor(`${title} answering on the new host`, async () => {
          const instance = await startedInstance(title);
          const url = instance.connectionParameters["url-ipv4"] ?? "";
          const page = await fresh.exec(`curl -sS -g --max-time 3 '${url}'`);
          return page.exitCode === 0 && page.stdout === `Hello from ${title}` ? instance : null;
        });
        expect(back.computerId).toBe(lost.computerId);
        const restored = await fresh.execOrThrow(
          `curl -sS -g --fail --max-time 3 '${back.connectionParameters["url-ipv4"]}files/note.txt'`,
        );
        expect(restored.trim()).toBe("kept across hosts");
      } finally {
        backups.close();
      }
    });

    it("refuses a restore URL it cannot pass on, before connecting", async () => {
      const unreachable = { ...options(hosts[5] as TestHost), target: { host: "192.0.2.1", user: "root" } };
      await expect(bootstrap({ ...unreachable, restoreFrom: "ftp://backups/" })).rejects.toThrow(
        "must be an http://, https:// or file:// URL",
      );
      await expect(bootstrap({ ...unreachable, restoreFrom: "not a url" })).rejects.toThrow("is not a URL");
    });

    it("uninstalls a node completely (no user, address, tap, process or file of ours left) and deregisters it", async () => {
      const second = hosts[1] as TestHost;
      const computerId =
        (await admin.listInstances()).find((i) => i.title === `web-${second.name}`)?.computerId ?? "";
      await expect(admin.deregisterComputer(computerId)).rejects.toThrow("still hosts instances");
      await admin.requestInstance({
        title: `web-${second.name}`,
        softwareReleaseUrl: RELEASE,
        parameters: { port: "8080" },
        state: "destroyed",
        sla: { computer_guid: computerId },
      });
      await waitFor("its partitions free", async () =>
        (await admin.getComputer(computerId)).partitions.every((partition) => partition.state === "free"),
      );
      const nodeIdentity = {
        url: master.url,
        ca: masterCa,
        certificate: await second.execOrThrow("cat /etc/opt/slapos/ssl/computer.crt"),
        key: await second.execOrThrow("cat /etc/opt/slapos/ssl/computer.key"),
      };
      expect(await nodeLeftovers(second)).not.toBe("");
      await writeFile(join(directory, "admin.json"), await readFile(master.adminConfigPath, "utf8"));
      const key = join(directory, "second.key");
      await writeFile(key, second.privateKey, { mode: 0o600 });
      const removed = await execa(
        "node",
        [
          resolve("dist/cli/main.js"),
          "bootstrap",
          `ssh://root@${second.ipv4}`,
          "--identity",
          key,
          "--host-key",
          second.hostKeyFingerprint,
          "--uninstall",
          "--config",
          join(directory, "admin.json"),
        ],
        { reject: false, all: true },
      );
      expect(removed.exitCode, removed.all).toBe(0);
      expect(removed.all).toContain(`deregistered computer ${computerId}`);
      expect(await nodeLeftovers(second)).toBe("");
      await expect(admin.getComputer(computerId)).rejects.toThrow(`no computer ${computerId}`);
      const node = new MasterClient(nodeIdentity);
      await expect(node.desiredState(computerId)).rejects.toMatchObject({
        status: 401,
        kind: "unauthenticated",
      });
      await node.close();
      await uninstall({ target: options(second).target });
    });
  },
);
