import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pulumiRequirements } from "./pulumi/harness.js";
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
  [
    requires.env("SLAPOS_NODE24", "Node 24 for the newest SDK (scripts/setup.sh installs it)"),
    ...pulumiRequirements,
  ],
  "the package in a user's project",
  () => {
    let work: string;
    let tarball: string;
    let newestSdk: string;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), "slapos-package-"));
      const packed = await execa("npm", ["pack", "--json", "--pack-destination", work], { cwd: REPOSITORY });
      tarball = join(work, (JSON.parse(packed.stdout) as { filename: string }[])[0]?.filename ?? "");
      newestSdk = (await execa("npm", ["view", "@pulumi/pulumi", "version"])).stdout.trim();
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
