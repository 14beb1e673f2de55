import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { OutputMap } from "@pulumi/pulumi/automation/index.js";
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from "vitest";
import { webCloud } from "../../examples/pulumi/web-cloud.js";
import { MasterClient } from "../../protocol/client.js";
import { SelfHostedMaster } from "../../provider/index.js";
import type { MasterSettings } from "../../provider/master.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { hostProcesses, nodeLeftovers } from "../support/node-host.js";
import { describeWith, requires } from "../support/requirements.js";
import { pulumiRequirements, TestStack } from "./harness.js";

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const MASTER_PROCESS = "[s]lap-master.mjs master start";

function outputOf<T>(outputs: OutputMap, name: string): T {
  const output = outputs[name];
  if (!output) throw new Error(`the stack has no output '${name}'`);
  return output.value as T;
}

/** What self-hosting leaves on its host beside the node: the seed, the releases, the master and its database. */
async function selfHostingLeftovers(host: TestHost): Promise<string> {
  const files = await host.execOrThrow(
    "ls -d /var/lib/slapos /var/log/slap-seed.log /run/slap-seed-service.pid 2>/dev/null; true",
  );
  const processes = [
    ...(await hostProcesses(host, "[s]lap-master.mjs")),
    ...(await hostProcesses(host, "[p]ostgres -D")),
  ];
  return [files.trim(), ...processes].filter(Boolean).join("\n");
}

describeWith(
  [
    ...testHostRequirements,
    ...pulumiRequirements,
    requires.env("SLAPOS_WHEELHOUSE", "the wheels of a node's Python environment"),
  ],
  "a self-hosted cloud: the master runs as an instance on the first of three hosts, pulumi up brings it all",
  () => {
    let directory: string;
    let network: TestNetwork;
    let hosts: [TestHost, TestHost, TestHost];
    let stack: TestStack;
    let master: MasterSettings;
    let client: MasterClient;

    const program = async () => {
      const [first, ...others] = hosts;
      const selfHosted = new SelfHostedMaster("master", {
        ssh: { host: first.ipv4, privateKey: first.privateKey, hostKey: first.hostKeyFingerprint },
        partitionCount: 3,
        ipv4LocalNetwork: "10.204.0.0/24",
      });
      const cloud = webCloud({
        hosts: others.map((host) => ({
          name: host.name,
          address: host.ipv4,
          hostKey: host.hostKeyFingerprint,
          privateKey: host.privateKey,
        })),
        release: RELEASE,
        partitionCount: 2,
        ipv4LocalNetwork: "10.204.1.0/24",
        master: selfHosted.master,
      });
      return {
        url: selfHosted.url,
        master: selfHosted.master,
        computerId: selfHosted.computerId,
        instanceId: selfHosted.instanceId,
        databaseInstanceId: selfHosted.databaseInstanceId,
        urls: cloud.urls,
      };
    };

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-self-hosting-"));
      // The first host downloads PostgreSQL for the master's database, as a real node would.
      network = await TestNetwork.create({ outboundNat: true });
      hosts = [await network.addHost(), await network.addHost(), await network.addHost()];
      await network.useUpstreamDns(hosts[0]);
      stack = await TestStack.create({ projectName: "slapos-self-hosting", program });
    }, 180_000);

    let failedTest: string | undefined;
    afterEach(({ task }) => {
      if (task.result?.state === "fail") failedTest ??= task.name;
    });
    beforeEach(({ skip }) => {
      if (failedTest) skip(`the stack is in an unknown state since '${failedTest}' failed`);
    });

    afterAll(async () => {
      await client?.close();
      await stack?.dispose();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 600_000);

    it("brings up the master on the first host and a web instance on each other, whose pages answer", async () => {
      const result = await stack.up();
      expect(result.summary.result, stack.output.join("").slice(-8000)).toBe("succeeded");
      master = outputOf<MasterSettings>(result.outputs, "master");
      expect(result.outputs.master?.secret).toBe(true);
      const url = outputOf<string>(result.outputs, "url");
      // The master is reached on its partition's IPv6 address, through the relay, not on the host's.
      expect(url).toMatch(/^https:\/\/\[[0-9a-f:]+\]:8443\/$/);
      expect(new URL(url).hostname).not.toBe(`[${hosts[0].ipv6}]`);
      client = new MasterClient({
        url: master.url,
        ca: master.caCertificate,
        certificate: master.certificate,
        key: master.privateKey,
      });
      const instances = await client.listInstances();
      for (const [index, host] of hosts.slice(1).entries()) {
        const web = instances.find((instance) => instance.title === `${host.name}-web`);
        expect(web?.status).toBe("ready");
        for (const key of ["url-ipv6", "url-ipv4"]) {
          const page = await host.execOrThrow(
            `curl -sS -g --max-time 5 '${web?.connectionParameters[key] ?? "(no url)"}'`,
          );
          expect(page, `${key} of ${host.name}`).toBe(`Hello from ${host.name}-web`);
        }
        expect(outputOf<string[]>(result.outputs, "urls")[index]).toBe(web?.connectionParameters.url);
      }
    }, 1_800_000);

    it("lists itself: the master instance and its database child, running on the first host", async () => {
      const instances = await client.listInstances();
      const self = instances.find((instance) => instance.title === "slapos-master");
      const database = instances.find((instance) => instance.parentId === self?.id);
      const firstComputer = (await client.listComputers()).find((computer) =>
        instances.some((instance) => instance.id === self?.id && instance.computerId === computer.id),
      );
      expect(self?.status).toBe("ready");
      expect(self?.partitionReference).toMatch(/^slappart\d+$/);
      expect(database?.status).toBe("ready");
      expect(database?.computerId).toBe(self?.computerId);
      expect(database?.partitionReference).not.toBe(self?.partitionReference);
      expect(firstComputer).toBeDefined();
      // The master's own process runs in that partition, as its user.
      const [pid] = await hostProcesses(hosts[0], MASTER_PROCESS);
      const owner = await hosts[0].execOrThrow(`ps -o user= -p ${pid}`);
      expect(owner.trim()).toBe(self?.partitionReference?.replace("slappart", "slapuser"));
      // The first host's node answers to it now, and the seed it started from is gone.
      const nodeMaster = await hosts[0].execOrThrow(
        "sed -n 's/^master_url *= *//p' /etc/opt/slapos/slapos.cfg",
      );
      expect(nodeMaster.trim()).toBe(master.url);
      expect(
        await hostProcesses(hosts[0], "[s]lap-master.mjs master start --data /var/lib/slapos/seed"),
      ).toEqual([]);
    }, 120_000);

    it("keeps everything when its process is killed: the node restarts it", async () => {
      const before = await client.createOrganisation({ title: "before-the-kill" });
      const [pid] = await hostProcesses(hosts[0], MASTER_PROCESS);
      await hosts[0].execOrThrow(`kill -9 ${pid}`);
      const deadline = Date.now() + 120_000;
      let restarted: string | undefined;
      while (Date.now() < deadline) {
        [restarted] = await hostProcesses(hosts[0], MASTER_PROCESS);
        if (restarted && restarted !== pid && (await client.listOrganisations().catch(() => null))) break;
        await new Promise((wake) => setTimeout(wake, 500));
      }
      expect(restarted).toBeDefined();
      expect(restarted).not.toBe(pid);
      const organisations = await client.listOrganisations();
      expect(organisations.map((organisation) => organisation.id)).toContain(before.id);
      const after = await client.createOrganisation({ title: "after-the-kill" });
      expect((await client.getOrganisation(after.id)).title).toBe("after-the-kill");
    }, 180_000);

    it("changes nothing on a second pulumi up", async () => {
      const result = await stack.up();
      expect(result.summary.result, stack.output.join("").slice(-8000)).toBe("succeeded");
      expect(Object.keys(result.summary.resourceChanges ?? {})).toEqual(["same"]);
    }, 900_000);

    it("tears it all down on pulumi destroy, leaving every host clean", async () => {
      const result = await stack.destroy();
      expect(result.summary.result, stack.output.join("").slice(-8000)).toBe("succeeded");
      for (const host of hosts) {
        expect(await nodeLeftovers(host, "10.204."), host.name).toBe("");
        expect(await selfHostingLeftovers(host), host.name).toBe("");
      }
    }, 900_000);
  },
);
