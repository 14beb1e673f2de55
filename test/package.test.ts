import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type TestHost, TestNetwork, testHostRequirements } from "./hosts/index.js";
import { newestSdkRequirement, newestSdkVersion, pulumiRequirements } from "./pulumi/harness.js";
import { type NetworkMaster, startNetworkMaster } from "./support/network-master.js";
import { nodeLeftovers } from "./support/node-host.js";
import { describeWith, requires } from "./support/requirements.js";

// The package as a Pulumi user receives it: `npm pack`'s tarball, installed into a fresh project
// next to the user's own @pulumi/pulumi. Runs on the built package (`npm run build`).

const REPOSITORY = resolve(".");
/** The oldest SDK of the peer range, with the oldest Node we support. */
const OLDEST = { sdk: "3.248.0", node: process.execPath };

interface PackedFile {
  path: string;
}

async function packedFiles(): Promise<string[]> {
  const packed = await execa("npm", ["pack", "--dry-run", "--json"], { cwd: REPOSITORY });
  const [listing] = JSON.parse(packed.stdout) as { files: PackedFile[] }[];
  return (listing?.files ?? []).map((file) => file.path);
}

/** The package as `npm pack` makes it, in a new directory, and the newest SDK the registry serves. */
async function packForUsers(prefix: string): Promise<{ work: string; tarball: string; newestSdk: string }> {
  const work = await mkdtemp(join(tmpdir(), prefix));
  const packed = await execa("npm", ["pack", "--json", "--pack-destination", work], { cwd: REPOSITORY });
  const tarball = join(work, (JSON.parse(packed.stdout) as { filename: string }[])[0]?.filename ?? "");
  return { work, tarball, newestSdk: await newestSdkVersion() };
}

describe("the npm package", () => {
  it("holds what users run and nothing of the tests, benchmarks or examples", async () => {
    const files = await packedFiles();
    for (const expected of [
      "package.json",
      "README.md",
      "dist/provider/index.js",
      "dist/provider/index.d.ts",
      "dist/provider/providers/index.js",
      "dist/protocol/client.js",
      "dist/master/server.js",
      "dist/cli/main.js",
      "dist/agent/slap-node.mjs",
    ]) {
      expect(files).toContain(expected);
    }
    expect(files.some((file) => file.startsWith("dist/master/db/migrations/"))).toBe(true);
    expect(files.filter((file) => /^dist\/(test|bench|examples)\/|\.test\.(js|d\.ts)$/.test(file))).toEqual(
      [],
    );
  });

  it("takes @pulumi/pulumi as a peer, so that a project has one copy", async () => {
    const manifest = JSON.parse(await readFile(join(REPOSITORY, "package.json"), "utf8"));
    expect(manifest.dependencies["@pulumi/pulumi"]).toBeUndefined();
    expect(manifest.peerDependencies["@pulumi/pulumi"]).toBe(">=3.248.0 <4");
    expect(manifest.devDependencies["@pulumi/pulumi"]).toBe(OLDEST.sdk);
  });
});

describeWith(
  [requires.env("SLAPOS_NODE24", "Node 24 for the newest SDK"), newestSdkRequirement, ...pulumiRequirements],
  "the package in a user's project",
  () => {
    let work: string;
    let tarball: string;
    let newestSdk: string;

    beforeAll(async () => {
      ({ work, tarball, newestSdk } = await packForUsers("slapos-package-"));
    }, 120_000);

    afterAll(async () => {
      await rm(work, { recursive: true, force: true });
    });

    /**
     * A fresh project with the tarball and `sdk`, run with `node`: one SDK copy, resources at the
     * root, and a real preview (the engine registering a resource of each kind through the
     * project's SDK) with the Automation API's inline program.
     */
    async function project(name: string, sdk: string, node: string) {
      const directory = join(work, name);
      await execa("mkdir", ["-p", directory]);
      await writeFile(
        join(directory, "package.json"),
        JSON.stringify({ name, private: true, type: "module" }, null, 2),
      );
      const nodeBin = resolve(node, "..");
      const env = { PATH: `${nodeBin}:${process.env.PATH}` };
      await execa(
        "npm",
        ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball, `@pulumi/pulumi@${sdk}`],
        {
          cwd: directory,
          env,
        },
      );
      const copies = await execa("find", ["node_modules", "-path", "*/@pulumi/pulumi/package.json"], {
        cwd: directory,
      });
      await writeFile(
        join(directory, "preview.mjs"),
        `import { LocalWorkspace } from "@pulumi/pulumi/automation/index.js";
import * as slapos from "pulumi-slapos";
const stack = await LocalWorkspace.createOrSelectStack(
  {
    stackName: "dev",
    projectName: ${JSON.stringify(name)},
    program: async () => {
      const release = new slapos.SoftwareRelease("hello", { url: "https://example.invalid/software.cfg", computerId: "COMP-1" });
      new slapos.SoftwareInstance("web", { title: "web", softwareRelease: release.url, sla: { computer_guid: "COMP-1" } });
      return { kinds: [typeof slapos.Computer, typeof slapos.Partition] };
    },
  },
  {
    workDir: process.cwd(),
    envVars: {
      PULUMI_BACKEND_URL: "file://" + process.cwd(),
      PULUMI_HOME: process.cwd() + "/.pulumi-home",
      PULUMI_CONFIG_PASSPHRASE: "test",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    },
  },
);
await stack.setAllConfig({ "slapos:masterUrl": { value: "https://127.0.0.1:1" } });
const preview = await stack.preview();
console.log(JSON.stringify(preview.changeSummary));
`,
      );
      const preview = await execa(node, ["preview.mjs"], { cwd: directory, env, reject: false, all: true });
      return { copies: copies.stdout.trim().split("\n"), preview };
    }

    for (const combination of [
      { name: "oldest", label: "Node 20 with SDK 3.248.0" },
      { name: "newest", label: "Node 24 with the newest SDK" },
    ]) {
      it(`installs one SDK copy and previews resources imported from the root (${combination.label})`, async () => {
        const node = combination.name === "oldest" ? OLDEST.node : (process.env.SLAPOS_NODE24 ?? "");
        const sdk = combination.name === "oldest" ? OLDEST.sdk : newestSdk;
        const { copies, preview } = await project(`user-${combination.name}`, sdk, node);
        expect(copies).toEqual(["node_modules/@pulumi/pulumi/package.json"]);
        expect(preview.exitCode, preview.all).toBe(0);
        expect(JSON.parse(preview.stdout.trim().split("\n").at(-1) ?? "{}")).toMatchObject({ create: 3 });
      }, 300_000);
    }
  },
);

/** A user's Pulumi program, as the README shows it: resources from the package root, settings from config. */
const USER_PROGRAM = `import * as pulumi from "@pulumi/pulumi";
import * as slapos from "pulumi-slapos";

const config = new pulumi.Config();
const node = new slapos.Computer("node", {
  ssh: { host: config.require("host"), hostKey: config.require("hostKey"), privateKey: config.requireSecret("sshKey") },
  partitionCount: 2,
  ipv4LocalNetwork: "10.203.0.0/24",
});
const release = new slapos.SoftwareRelease("hello", { url: config.require("release"), computerId: node.computerId });
const web = new slapos.SoftwareInstance(
  "web",
  { title: "web", softwareRelease: release.url, sla: { computer_guid: release.computerId }, waitFor: ["url-ipv4"] },
  { dependsOn: release },
);
export const url = pulumi.unsecret(web.connectionParameters.apply((parameters) => parameters["url-ipv4"]));
export const nodeVersion = process.version;
`;

describeWith(
  [
    ...testHostRequirements,
    ...pulumiRequirements,
    requires.command(
      "pulumi-language-nodejs",
      "pulumi up in a project directory (scripts/setup.sh provides one)",
    ),
    requires.env("SLAPOS_NODE24", "Node 24 for the newest SDK"),
    newestSdkRequirement,
    requires.env("SLAPOS_WHEELHOUSE", "the wheels of a node's Python environment"),
  ],
  "pulumi up in a user's project directory, against a master and a test host",
  () => {
    let work: string;
    let tarball: string;
    let newestSdk: string;
    let network: TestNetwork;
    let running: NetworkMaster;

    beforeAll(async () => {
      ({ work, tarball, newestSdk } = await packForUsers("slapos-project-"));
      network = await TestNetwork.create();
      running = await startNetworkMaster(network, work);
    }, 180_000);

    afterAll(async () => {
      await running?.close();
      await network?.destroy();
      await rm(work, { recursive: true, force: true });
    }, 120_000);

    for (const combination of [
      { name: "oldest", label: "Node 20, SDK 3.248.0" },
      { name: "newest", label: "Node 24, the newest SDK" },
    ]) {
      it(`runs pulumi preview, up, refresh and destroy (${combination.label})`, async () => {
        const node = combination.name === "oldest" ? OLDEST.node : (process.env.SLAPOS_NODE24 ?? "");
        const sdk = combination.name === "oldest" ? OLDEST.sdk : newestSdk;
        const host: TestHost = await network.addHost();
        const directory = join(work, `project-${combination.name}`);
        await execa("mkdir", ["-p", directory]);
        await writeFile(
          join(directory, "package.json"),
          JSON.stringify({ name: "web", private: true, type: "module", main: "index.js" }),
        );
        await writeFile(join(directory, "Pulumi.yaml"), "name: web\nruntime: nodejs\n");
        await writeFile(join(directory, "index.js"), USER_PROGRAM);
        // The project's own Node first on PATH: the language host and the provider plugin run with it.
        const env = {
          PATH: `${resolve(node, "..")}:${process.env.PATH}`,
          PULUMI_BACKEND_URL: `file://${directory}`,
          PULUMI_HOME: join(directory, ".pulumi-home"),
          PULUMI_CONFIG_PASSPHRASE: "test",
          PULUMI_SKIP_UPDATE_CHECK: "true",
          PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
        };
        await execa(
          "npm",
          ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball, `@pulumi/pulumi@${sdk}`],
          {
            cwd: directory,
            env,
          },
        );
        const output: string[] = [];
        const pulumi = async (args: string[], input?: string) => {
          const result = await execa("pulumi", args, {
            cwd: directory,
            env,
            input,
            reject: false,
            all: true,
          });
          output.push(`$ pulumi ${args.join(" ")}\n${result.all}`);
          if (result.exitCode !== 0)
            throw new Error(`pulumi ${args.join(" ")} failed:\n${output.join("\n").slice(-6000)}`);
          return result.stdout;
        };
        await pulumi(["stack", "init", "dev"]);
        for (const [key, value] of Object.entries(running.stackConfig)) {
          await pulumi(["config", "set", ...(value.secret ? ["--secret"] : []), key], value.value);
        }
        await pulumi(["config", "set", "host", host.ipv4]);
        await pulumi(["config", "set", "hostKey", host.hostKeyFingerprint]);
        await pulumi(["config", "set", "--secret", "sshKey"], host.privateKey);
        await pulumi(["config", "set", "release", resolve("examples/software/hello-web/software.cfg")]);
        const preview = await pulumi(["preview", "--diff"]);
        expect(preview).toMatch(/\+ 4 to create|4 to create/);
        await pulumi(["up", "--yes", "--skip-preview"]);
        const url = (await pulumi(["stack", "output", "url"])).trim();
        // The program ran on the project's Node.
        const { stdout: projectNode } = await execa(node, ["--version"]);
        expect((await pulumi(["stack", "output", "nodeVersion"])).trim()).toBe(projectNode.trim());
        const page = await host.exec(`curl -sS -g --max-time 5 '${url}'`);
        expect(page.stdout).toContain("Hello from web");
        expect(await pulumi(["refresh", "--yes", "--skip-preview"])).toMatch(/unchanged/);
        await pulumi(["destroy", "--yes", "--skip-preview"]);
        expect(await nodeLeftovers(host, "10.203.")).toBe("");
      }, 900_000);
    }
  },
);
