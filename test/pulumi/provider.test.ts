import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import type { OutputMap } from "@pulumi/pulumi/automation/index.js";
import { version as sdkVersion } from "@pulumi/pulumi/version.js";
import { execa } from "execa";
import { afterAll, afterEach, beforeAll, beforeEach, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { Computer, Partition, SoftwareInstance, SoftwareRelease } from "../../provider/index.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { nodeLeftovers } from "../support/node-host.js";
import { describeWith, requires } from "../support/requirements.js";
import { newestSdkRequirement, newestSdkVersion, pulumiRequirements, TestStack } from "./harness.js";

const RELEASE = resolve("examples/software/hello-web/software.cfg");
const BROKEN_RELEASE = resolve("test/pulumi/broken-release/software.cfg");
/** vitest.config.ts runs this file a second time, on Node 24 with the newest SDK ("newest"). */
const PAIR = process.env.SLAPOS_TEST_PAIR === "newest" ? "newest" : "oldest";

/**
 * Starts the engine's plugin for dynamic resources as the engine finds it (beside the pulumi
 * binary, else on PATH), and reads which Node binary and which SDK script it runs.
 */
async function dynamicProviderProcess(): Promise<{ node: string; script: string }> {
  const { stdout: pulumiPath } = await execa("sh", ["-c", 'readlink -f "$(command -v pulumi)"']);
  const beside = join(dirname(pulumiPath), "pulumi-resource-pulumi-nodejs");
  // The engine passes its address; nothing dials it before a request comes.
  const plugin = execa(existsSync(beside) ? beside : "pulumi-resource-pulumi-nodejs", ["127.0.0.1:1"], {
    reject: false,
  });
  try {
    // It prints its port once it serves.
    await new Promise<void>((ready, fail) => {
      plugin.stdout?.once("data", () => ready());
      plugin.once("exit", () => fail(new Error("the dynamic provider plugin exited before serving")));
    });
    const commandLine = (await readFile(`/proc/${plugin.pid}/cmdline`, "utf8")).split("\0");
    return { node: await realpath(`/proc/${plugin.pid}/exe`), script: commandLine[1] ?? "" };
  } finally {
    plugin.kill();
    await plugin;
  }
}

function outputOf<T>(outputs: OutputMap, name: string): T {
  const output = outputs[name];
  if (!output) throw new Error(`the stack has no output '${name}'`);
  return output.value as T;
}

/** What the program declares; tests change it between operations. */
interface Spec {
  partitionCount: number;
  greeting: string;
  state: "started" | "stopped";
  routableIpv4?: string;
  broken?: boolean;
  unpublishedKey?: boolean;
  /** Declares an instance requested outside Pulumi: creating it takes the instance over. */
  adopted?: { computerId: string };
  /** A computer on the third host, which the test then cuts off the network. */
  lostHost?: boolean;
}

describeWith(
  [
    ...testHostRequirements,
    ...pulumiRequirements,
    requires.env("SLAPOS_WHEELHOUSE", "the wheels of a node's Python environment"),
    ...(PAIR === "newest" ? [newestSdkRequirement] : []),
  ],
  `the Pulumi provider: real pulumi up/preview/refresh/destroy against a master and two test hosts (${PAIR} Node and SDK)`,
  () => {
    let directory: string;
    let network: TestNetwork;
    let hosts: [TestHost, TestHost];
    let lost: TestHost;
    let running: NetworkMaster;
    let admin: MasterClient;
    let stack: TestStack;
    const spec: Spec = { partitionCount: 2, greeting: "Hello", state: "started" };

    const program = async () => {
      const computers = hosts.map(
        (host) =>
          new Computer(host.name, {
            ssh: { host: host.ipv4, privateKey: host.privateKey, hostKey: host.hostKeyFingerprint },
            title: host.name,
            partitionCount: host === hosts[0] ? spec.partitionCount : 2,
            ipv4LocalNetwork: "10.202.0.0/24",
            region: "test",
            pricePerHour: 0.5,
            // The second one serves the public marketplace; the first keeps the default (personal).
            ...(host === hosts[1] ? { allocationScope: "open" as const } : {}),
          }),
      );
      const releases = computers.map(
        (computer, index) =>
          new SoftwareRelease(`hello-web-${index}`, { url: RELEASE, computerId: computer.computerId }),
      );
      const instances = releases.map(
        (release, index) =>
          new SoftwareInstance(
            `web-${index}`,
            {
              title: `web-${index}`,
              softwareRelease: release.url,
              parameters: { greeting: spec.greeting, port: 8080 },
              sla: { computer_guid: release.computerId },
              state: spec.state,
              waitFor: ["url-ipv4"],
            },
            { dependsOn: release },
          ),
      );
      if (spec.routableIpv4) {
        new Partition("routable", {
          computerId: computers[0]?.computerId ?? "",
          reference: "slappart1",
          routableIpv4: spec.routableIpv4,
        });
      }
      if (spec.broken) {
        new SoftwareRelease("broken", { url: BROKEN_RELEASE, computerId: computers[1]?.computerId ?? "" });
      }
      if (spec.unpublishedKey) {
        new SoftwareInstance(
          "never-ready",
          {
            title: "never-ready",
            softwareRelease: RELEASE,
            sla: { computer_guid: computers[1]?.computerId ?? "" },
            waitFor: ["a-key-nobody-publishes"],
          },
          { customTimeouts: { create: "20s" }, dependsOn: releases },
        );
      }
      if (spec.adopted) {
        new SoftwareInstance("adopted", {
          title: "adopted",
          softwareRelease: RELEASE,
          parameters: { greeting: "Hi" },
          sla: { computer_guid: spec.adopted.computerId },
          waitFor: ["url-ipv4"],
        });
      }
      const lostComputer =
        spec.lostHost &&
        new Computer("lost", {
          ssh: { host: lost.ipv4, privateKey: lost.privateKey, hostKey: lost.hostKeyFingerprint },
          partitionCount: 1,
          ipv4LocalNetwork: "10.202.1.0/24",
        });
      return {
        lostComputerId: lostComputer ? lostComputer.computerId : undefined,
        urls: instances.map((instance) => instance.connectionParameters.apply((p) => p["url-ipv4"])),
        computerIds: computers.map((computer) => computer.computerId),
        partitions: computers[0]?.partitions,
        instanceIds: instances.map((instance) => instance.instanceId),
        firstConnection: instances[0]?.connectionParameters,
      };
    };

    const waitFor = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 60_000;
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((wake) => setTimeout(wake, 250));
      }
    };

    const page = async (host: TestHost, url: string) => {
      const result = await host.exec(`curl -sS -g --max-time 3 '${url}'`);
      return result.exitCode === 0 ? result.stdout : `(no answer: ${result.stderr.trim()})`;
    };

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-provider-"));
      network = await TestNetwork.create();
      hosts = [await network.addHost(), await network.addHost()];
      lost = await network.addHost();
      running = await startNetworkMaster(network, directory);
      admin = running.admin;
      stack = await TestStack.create({
        projectName: "slapos-provider",
        program,
        config: running.stackConfig,
      });
    }, 120_000);

    // Each test starts from the stack the previous ones left: after a failure the rest would only
    // wait out their timeouts on a stack in an unknown state.
    let failedTest: string | undefined;
    afterEach(({ task }) => {
      if (task.result?.state === "fail") failedTest ??= task.name;
    });
    beforeEach(({ skip }) => {
      if (failedTest) skip(`the stack is in an unknown state since '${failedTest}' failed`);
    });

    afterAll(async () => {
      await stack?.dispose();
      await running?.close();
      await network?.destroy();
      await rm(directory, { recursive: true, force: true });
    }, 300_000);

    it("runs on the Node and SDK of its pair", async () => {
      const repositorySdk = JSON.parse(await readFile("package.json", "utf8")).devDependencies[
        "@pulumi/pulumi"
      ];
      // The engine's plugin for dynamic resources runs on the same Node and SDK as the program.
      const plugin = await dynamicProviderProcess();
      expect(plugin.node).toBe(await realpath(process.execPath));
      if (PAIR === "newest") {
        expect(process.version).toMatch(/^v24\./);
        expect(sdkVersion).toBe(await newestSdkVersion());
        expect(plugin.script.startsWith(`${process.env.SLAPOS_NEWEST_PULUMI_SDK}/`)).toBe(true);
      } else {
        expect(sdkVersion).toBe(repositorySdk);
        expect(plugin.script.startsWith(resolve("node_modules/@pulumi/pulumi/"))).toBe(true);
      }
    });

    it("creates computers, releases and instances whose URLs answer", async () => {
      const result = await stack.up();
      expect(result.summary.result, stack.output.join("")).toBe("succeeded");
      expect(result.summary.resourceChanges).toEqual({ create: 7 });
      const urls = outputOf<string[]>(result.outputs, "urls");
      expect(result.outputs.firstConnection?.secret).toBe(true);
      for (const [index, url] of urls.entries()) {
        expect(await page(hosts[index] as TestHost, url)).toBe(`Hello from web-${index}`);
      }
      const partitions = result.outputs.partitions?.value as {
        reference: string;
        user: string;
        ipv4: string[];
      }[];
      expect(partitions.map((p) => [p.reference, p.user])).toEqual([
        ["slappart0", "slapuser0"],
        ["slappart1", "slapuser1"],
      ]);
      expect(partitions[0]?.ipv4[0]).toMatch(/^10\.202\.0\.\d+$/);
      const computers = await admin.listComputers();
      expect(computers.filter((c) => c.region === "test" && c.pricePerPartitionHour === 0.5)).toHaveLength(2);
      expect(computers.map((c) => [c.title, c.allocationScope])).toEqual(
        expect.arrayContaining([
          [hosts[0]?.name, "personal"],
          [hosts[1]?.name, "open"],
        ]),
      );
      // Progress reached Pulumi's output.
      expect(stack.output.join("")).toContain("python environment done");
    }, 600_000);

    it("shows no changes in a preview when nothing changed", async () => {
      const preview = await stack.preview();
      expect(preview.changeSummary).toEqual({ same: 7 });
    }, 600_000);

    it("keeps every secret out of the state file in clear", async () => {
      const state = await stack.stateFileText();
      expect(state).toContain("pulumi-nodejs:dynamic/slapos:Computer");
      for (const host of hosts) expect(state).not.toContain(host.privateKey.split("\n")[1]);
      const identity = JSON.parse(await readFile(running.master.adminConfigPath, "utf8")) as { key: string };
      expect(state).not.toContain(identity.key.split("\n")[1]);
      expect(state).not.toContain("Hello from");
      const instances = await admin.listInstances();
      for (const instance of instances)
        expect(state).not.toContain(instance.connectionParameters["url-ipv4"]);
      expect(state).not.toContain(stack.secretsPassphrase);
    }, 600_000);

    it("changes parameters in place: same instance, new page", async () => {
      const before = outputOf<string[]>(await stack.stack.outputs(), "instanceIds");
      spec.greeting = "Bonjour";
      const preview = await stack.preview();
      expect(preview.changeSummary).toEqual({ same: 5, update: 2 });
      const result = await stack.up();
      expect(result.summary.resourceChanges).toEqual({ same: 5, update: 2 });
      expect(result.outputs.instanceIds?.value).toEqual(before);
      const urls = outputOf<string[]>(result.outputs, "urls");
      expect(await page(hosts[0], urls[0] ?? "")).toBe("Bonjour from web-0");
    }, 600_000);

    it("stops and starts instances through their state", async () => {
      spec.state = "stopped";
      await stack.up();
      const urls = outputOf<string[]>(await stack.stack.outputs(), "urls");
      expect(await page(hosts[0], urls[0] ?? "")).toContain("no answer");
      expect((await admin.listInstances()).map((i) => i.reportedState)).toEqual(["stopped", "stopped"]);
      spec.state = "started";
      await stack.up();
      expect(await page(hosts[0], urls[0] ?? "")).toBe("Bonjour from web-0");
    }, 600_000);

    it("adds partitions to a computer in place", async () => {
      spec.partitionCount = 4;
      // The computer's outputs are unknown until it is updated: a preview shows what depends on
      // them as possible updates, never as replacements; the update itself changes only the computer.
      const preview = await stack.preview();
      expect(preview.changeSummary).toEqual({ same: 4, update: 3 });
      const result = await stack.up();
      expect(result.summary.resourceChanges).toEqual({ same: 6, update: 1 });
      expect(outputOf<unknown[]>(result.outputs, "partitions").length).toBe(4);
      const computerId = outputOf<string[]>(result.outputs, "computerIds")[0] ?? "";
      expect((await admin.getComputer(computerId)).partitions).toHaveLength(4);
    }, 600_000);

    it("configures one partition on its own: a routable IPv4 address, applied by the node and undone", async () => {
      spec.routableIpv4 = "192.0.2.10";
      const result = await stack.up();
      expect(result.summary.resourceChanges).toEqual({ same: 7, create: 1 });
      const onHost = () => hosts[0].execOrThrow("ip -o -4 addr show dev eth0");
      await waitFor("the address on the host", async () => (await onHost()).includes("192.0.2.10/32"));
      const computerId = outputOf<string[]>(result.outputs, "computerIds")[0] ?? "";
      const slappart1 = (await admin.getComputer(computerId)).partitions.find(
        (p) => p.reference === "slappart1",
      );
      expect(slappart1?.extras).toEqual({ routableIpv4: "192.0.2.10" });
      expect((await stack.preview()).changeSummary).toEqual({ same: 8 });
      spec.routableIpv4 = undefined;
      expect((await stack.up()).summary.resourceChanges).toEqual({ same: 7, delete: 1 });
      await waitFor("the address gone from the host", async () => !(await onHost()).includes("192.0.2.10"));
    }, 600_000);

    it("finds drift on refresh: an instance stopped and another destroyed behind Pulumi's back", async () => {
      const [first, second] = (await admin.listInstances()).sort((a, b) => a.title.localeCompare(b.title));
      await admin.requestInstance({
        title: first?.title ?? "",
        softwareReleaseUrl: RELEASE,
        state: "stopped",
      });
      await admin.requestInstance({
        title: second?.title ?? "",
        softwareReleaseUrl: RELEASE,
        state: "destroyed",
      });
      const refresh = await stack.refresh();
      expect(refresh.summary.resourceChanges).toEqual({ same: 5, update: 1, delete: 1 });
      const preview = await stack.preview();
      expect(preview.changeSummary).toEqual({ same: 5, update: 1, create: 1 });
      const result = await stack.up();
      expect(result.summary.result).toBe("succeeded");
      const urls = outputOf<string[]>(result.outputs, "urls");
      expect(await page(hosts[0], urls[0] ?? "")).toBe("Bonjour from web-0");
      expect(await page(hosts[1], urls[1] ?? "")).toBe("Bonjour from web-1");
    }, 600_000);

    it("fails with the end of the build log when a release does not build", async () => {
      spec.broken = true;
      const failed = await stack.up().catch((error: Error) => error);
      expect(failed).toBeInstanceOf(Error);
      const message = String((failed as Error).message);
      expect(message).toContain(`software release ${BROKEN_RELEASE} on computer`);
      expect(message).toContain("failed to build; the end of its build log:");
      expect(message).toContain("this release is broken on purpose");
      const directory = `/opt/slapgrid/${createHash("md5").update(BROKEN_RELEASE).digest("hex")}`;
      const onHost = async () =>
        (await hosts[1].execOrThrow(`test -e ${directory} && echo present || echo absent`)).trim();
      expect(await onHost()).toBe("present");
      // Removing it does not wait for the failed build's next try, and takes its files away.
      spec.broken = false;
      expect((await stack.up()).summary.result).toBe("succeeded");
      expect(await onHost()).toBe("absent");
    }, 600_000);

    it("names what it was waiting for when an instance times out", async () => {
      spec.unpublishedKey = true;
      const failed = await stack.up().catch((error: Error) => error);
      expect(failed).toBeInstanceOf(Error);
      expect(String((failed as Error).message)).toContain(
        "instance 'never-ready': gave up after 20 s waiting for it to be started with connection parameters a-key-nobody-publishes; last seen: started; waiting for connection parameters a-key-nobody-publishes",
      );
      spec.unpublishedKey = false;
      expect((await stack.up()).summary.result).toBe("succeeded");
    }, 600_000);

    it("adopts an instance requested outside Pulumi: same instance, then destroyed with the resource", async () => {
      const computerId = outputOf<string[]>(await stack.stack.outputs(), "computerIds")[1] ?? "";
      const outside = await admin.requestInstance({
        title: "adopted",
        softwareReleaseUrl: RELEASE,
        parameters: { greeting: "Hi" },
        sla: { computer_guid: computerId },
      });
      spec.adopted = { computerId };
      const result = await stack.up();
      expect(result.summary.resourceChanges).toEqual({ same: 7, create: 1 });
      const titled = (await admin.listInstances()).filter((instance) => instance.title === "adopted");
      expect(titled.map((instance) => [instance.id, instance.status])).toEqual([[outside.id, "ready"]]);
      expect(await page(hosts[1], titled[0]?.connectionParameters["url-ipv4"] ?? "")).toBe("Hi from adopted");
      spec.adopted = undefined;
      expect((await stack.up()).summary.resourceChanges).toEqual({ same: 7, delete: 1 });
      const left = (await admin.listInstances()).filter((instance) => instance.title === "adopted");
      expect(left.filter((instance) => !instance.destroyedAt)).toEqual([]);
    }, 600_000);

    it("refuses to remove a release while instances use it, saying which", async () => {
      // A second stack takes over the supply the first one made, then tries to remove it.
      const computerId = outputOf<string[]>(await stack.stack.outputs(), "computerIds")[0] ?? "";
      const borrower = await TestStack.create({
        projectName: "slapos-borrower",
        program: async () => {
          new SoftwareRelease("borrowed", { url: RELEASE, computerId });
        },
        config: running.stackConfig,
      });
      try {
        // The stack itself and the release.
        expect((await borrower.up()).summary.resourceChanges).toEqual({ create: 2 });
        const refused = await borrower.destroy().catch((error: Error) => error);
        expect(refused).toBeInstanceOf(Error);
        expect(String((refused as Error).message)).toContain(
          `software release ${RELEASE} on computer ${computerId} is still used by instance(s) 'web-0': destroy them (or move them to another release) first`,
        );
        const software = (await admin.getComputer(computerId)).software.find((s) => s.url === RELEASE);
        expect(software?.requestedState).toBe("available");
      } finally {
        await borrower.dispose();
      }
    }, 600_000);

    it("deletes a computer whose host is gone with a warning, and retires it on the master", async () => {
      spec.lostHost = true;
      const created = await stack.up();
      expect(created.summary.resourceChanges).toEqual({ same: 7, create: 1 });
      const computerId = outputOf<string>(created.outputs, "lostComputerId");
      expect((await admin.getComputer(computerId)).partitions).toHaveLength(1);
      await lost.execOrThrow("ip link set eth0 down");
      spec.lostHost = false;
      const deleted = await stack.up();
      expect(deleted.summary.resourceChanges).toEqual({ same: 7, delete: 1 });
      expect(stack.output.join("")).toContain(
        `computer ${lost.ipv4}: warning: the host is gone (cannot connect to root@${lost.ipv4}`,
      );
      await expect(admin.getComputer(computerId)).rejects.toThrow(`no computer ${computerId}`);
    }, 600_000);

    it("destroys everything and leaves the hosts clean", async () => {
      const result = await stack.destroy();
      expect(result.summary.result).toBe("succeeded");
      for (const host of hosts) expect(await nodeLeftovers(host, "10.202.")).toBe("");
      expect(await admin.listComputers()).toEqual([]);
      expect((await admin.listInstances()).filter((instance) => !instance.destroyedAt)).toEqual([]);
    }, 600_000);
  },
);
