import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { execa, execaSync } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWith, type Requirement } from "../support/requirements.js";
import { pulumiRequirements } from "./harness.js";

const languageHost: Requirement = {
  why:
    "a pulumi-language-nodejs beside pulumi or on PATH: runs the project's program (scripts/setup.sh puts " +
    "test/support/language-host on PATH when Pulumi has none)",
  isMet: () =>
    execaSync(
      "sh",
      [
        "-c",
        'command -v pulumi-language-nodejs || [ -x "$(dirname "$(readlink -f "$(command -v pulumi)")")/pulumi-language-nodejs" ]',
      ],
      { reject: false },
    ).exitCode === 0,
};

const projectName = "language-host-test";

// CommonJS on purpose: the language host must load a plain `main` the way `node` would. The
// provider runs in the engine's dynamic provider process from its serialized text, so it
// captures nothing and reaches modules through `require` at call time.
const program = `
const path = require("node:path");
const pulumi = require("@pulumi/pulumi");

const provider = {
  async create(inputs) {
    require("node:fs").writeFileSync(inputs.path, inputs.content);
    return { id: inputs.path, outs: inputs };
  },
  async read(id, props) {
    return { id, props: { ...props, content: require("node:fs").readFileSync(id, "utf8") } };
  },
  async delete(id) {
    require("node:fs").rmSync(id);
  },
};

const config = new pulumi.Config();
const file = new pulumi.dynamic.Resource(provider, "greeting-file", {
  path: path.join(__dirname, "greeting.txt"),
  content: config.require("greeting"),
});

module.exports = { greeting: config.require("greeting"), token: config.requireSecret("token"), file: file.id };
`;

interface Summary {
  isPreview: boolean;
  result: string;
  resourceChanges: Record<string, number>;
}

/**
 * The summary of a `--json` update, refresh or destroy. Pulumi prints its preview as one indented
 * JSON document, then the operation's engine events one compact JSON object a line.
 */
function summaryOf(output: string): Summary {
  for (const line of output.split("\n")) {
    if (!line.startsWith('{"')) continue;
    const { summaryEvent } = JSON.parse(line) as { summaryEvent?: Summary };
    if (summaryEvent && !summaryEvent.isPreview) return summaryEvent;
  }
  throw new Error(`no summary event in the output of pulumi:\n${output}`);
}

describeWith(
  [...pulumiRequirements, languageHost],
  "the pulumi CLI runs a project directory's program",
  () => {
    let directory: string;
    let projectDir: string;
    let env: Record<string, string>;
    const token = `s3cret-${randomBytes(8).toString("hex")}`;

    async function pulumi(...args: string[]): Promise<string> {
      const result = await execa("pulumi", args, {
        cwd: projectDir,
        env,
        extendEnv: false,
        reject: false,
        all: true,
      });
      if (result.exitCode !== 0) {
        throw new Error(
          `'pulumi ${args.join(" ")}' failed with exit code ${result.exitCode}:\n${result.all}`,
        );
      }
      return result.stdout;
    }

    async function resourceState(): Promise<{ type: string; outputs?: Record<string, unknown> }[]> {
      const exported = JSON.parse(await pulumi("stack", "export")) as {
        deployment: { resources?: { type: string; outputs?: Record<string, unknown> }[] };
      };
      return exported.deployment.resources ?? [];
    }

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "pulumi-language-host-"));
      projectDir = join(directory, "project");
      await mkdir(join(projectDir, "node_modules", "@pulumi"), { recursive: true });
      await mkdir(join(directory, "backend"));
      // The program and the language host must share one @pulumi/pulumi: the project's, linked to ours.
      const sdk = dirname(createRequire(import.meta.url).resolve("@pulumi/pulumi/package.json"));
      await symlink(sdk, join(projectDir, "node_modules", "@pulumi", "pulumi"));
      await writeFile(
        join(projectDir, "Pulumi.yaml"),
        `name: ${projectName}\nruntime:\n  name: nodejs\n  options:\n    typescript: false\n`,
      );
      await writeFile(
        join(projectDir, "package.json"),
        JSON.stringify({ name: projectName, main: "index.js", dependencies: { "@pulumi/pulumi": "*" } }),
      );
      await writeFile(join(projectDir, "index.js"), program);
      // Inherited PULUMI_* settings (a backend URL, an access token) must not redirect the CLI.
      const inherited = Object.entries(process.env).filter(
        (entry): entry is [string, string] => !entry[0].startsWith("PULUMI_") && entry[1] !== undefined,
      );
      env = {
        ...Object.fromEntries(inherited),
        PULUMI_HOME: join(directory, "home"),
        PULUMI_CONFIG_PASSPHRASE: randomBytes(16).toString("hex"),
        PULUMI_SKIP_UPDATE_CHECK: "true",
        PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      };
    });

    afterAll(async () => {
      if (!directory) return;
      await pulumi("destroy", "--yes").catch(() => {});
      await rm(directory, { recursive: true, force: true });
    });

    it("creates a stack whose secret config is stored encrypted", async () => {
      await pulumi("login", `file://${join(directory, "backend")}`);
      await pulumi("stack", "init", "test");
      await pulumi("config", "set", "greeting", "hi");
      await pulumi("config", "set", "--secret", "token", token);
      const stackConfig = await readFile(join(projectDir, "Pulumi.test.yaml"), "utf8");
      expect(stackConfig).toContain(`${projectName}:greeting: hi`);
      expect(stackConfig).toContain("secure:");
      expect(stackConfig).not.toContain(token);
    });

    it("previews the program without creating anything", async () => {
      const preview = JSON.parse(await pulumi("preview", "--json")) as {
        changeSummary: Record<string, number>;
      };
      expect(preview.changeSummary).toEqual({ create: 2 }); // the stack and the dynamic resource
      expect(existsSync(join(projectDir, "greeting.txt"))).toBe(false);
    });

    it("runs the program on up: the config reaches it and the dynamic resource is created", async () => {
      const summary = summaryOf(await pulumi("up", "--yes", "--json"));
      expect(summary).toMatchObject({ result: "succeeded", resourceChanges: { create: 2 } });
      expect(await readFile(join(projectDir, "greeting.txt"), "utf8")).toBe("hi");
      const types = (await resourceState()).map((resource) => resource.type);
      expect(types).toContain("pulumi-nodejs:dynamic:Resource");
    });

    it("keeps the secret config value secret in the stack outputs", async () => {
      expect(JSON.parse(await pulumi("stack", "output", "--json", "--show-secrets"))).toEqual({
        greeting: "hi",
        token,
        file: join(projectDir, "greeting.txt"),
      });
      expect(JSON.parse(await pulumi("stack", "output", "--json"))).toMatchObject({ token: "[secret]" });
      const checkpoint = await readFile(
        join(directory, "backend", ".pulumi", "stacks", projectName, "test.json"),
        "utf8",
      );
      expect(checkpoint).not.toContain(token);
    });

    it("refreshes the dynamic resource from what its provider reads", async () => {
      await writeFile(join(projectDir, "greeting.txt"), "edited behind Pulumi's back");
      const summary = summaryOf(await pulumi("refresh", "--yes", "--json"));
      expect(summary.result).toBe("succeeded");
      const file = (await resourceState()).find(
        (resource) => resource.type === "pulumi-nodejs:dynamic:Resource",
      );
      expect(file?.outputs?.content).toBe("edited behind Pulumi's back");
    });

    it("destroys the dynamic resource", async () => {
      const summary = summaryOf(await pulumi("destroy", "--yes", "--json"));
      expect(summary).toMatchObject({ result: "succeeded", resourceChanges: { delete: 2 } });
      expect(existsSync(join(projectDir, "greeting.txt"))).toBe(false);
      expect(await resourceState()).toEqual([]);
    });
  },
);
