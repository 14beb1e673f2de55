import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ClientConfig, type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { type BootstrapOptions, bootstrap, type ProgressEvent } from "../../slave-bootstrap/index.js";
import { HostKeyMismatchError } from "../../slave-bootstrap/ssh.js";
import { SUDO_USER, type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { describeWith, requires } from "../support/requirements.js";

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const AGENT = resolve("dist/agent/slap-node.mjs");

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

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-bootstrap-"));
      network = await TestNetwork.create();
      hosts = [await network.addHost(), await network.addHost(), await network.addHost()];
      master = await startMaster({
        dataDir: join(directory, "master"),
        host: network.gatewayIpv4,
        port: 0,
        logger: pino({ level: "silent" }),
      });
      const adminConfig = JSON.parse(await readFile(master.adminConfigPath, "utf8")) as ClientConfig;
      masterCa = adminConfig.ca ?? "";
      admin = new MasterClient({ ...adminConfig, url: master.url });
    }, 120_000);
    afterAll(async () => {
      await admin?.close();
      await master?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("makes one host (as root) and another (through a sudo user) registered nodes that run an instance", async () => {
      const [first, second] = hosts as [TestHost, TestHost];
      const events: ProgressEvent[] = [];
      const firstToken = await token();
      const asRoot = await bootstrap(options(first, { token: firstToken }), (event) => events.push(event));
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
      const tokenCommand = asRoot.commands.find((record) => record.command.includes("register"));
      expect(tokenCommand?.command).toContain("--token '***'");
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
        /registration|token/i,
      );
      expect((await third.exec("test -e /etc/opt/slapos/ssl/computer.crt")).exitCode).not.toBe(0);
    });
  },
);
