import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type DestroyResult,
  LocalWorkspace,
  type PreviewResult,
  type PulumiFn,
  type RefreshResult,
  type Stack,
  type UpResult,
} from "@pulumi/pulumi/automation/index.js";
import { requires } from "../support/requirements.js";

export const pulumiRequirements = [
  requires.command("pulumi", "runs real pulumi up/preview/refresh/destroy (scripts/setup.sh builds it)"),
  requires.command("pulumi-resource-pulumi-nodejs", "the engine's plugin for dynamic resources"),
];

/** The newest SDK of the peer range the registry serves, as scripts/setup.sh installed it. */
export const newestSdkRequirement = requires.env(
  "SLAPOS_NEWEST_PULUMI_SDK",
  "the newest @pulumi/pulumi of the peer range the registry serves",
);

export async function newestSdkVersion(): Promise<string> {
  const manifest = join(process.env.SLAPOS_NEWEST_PULUMI_SDK ?? "", "package.json");
  return (JSON.parse(await readFile(manifest, "utf8")) as { version: string }).version;
}

export interface TestStackOptions {
  projectName: string;
  /** The inline program: runs in this process, as the Automation API runs it. */
  program: PulumiFn;
  /** Stack config, e.g. `{ "slapos:masterUrl": { value: "...", secret: false } }`. */
  config?: Record<string, { value: string; secret?: boolean }>;
}

/**
 * A real Pulumi stack on a file backend in a temporary directory, with its own PULUMI_HOME and
 * the environment that keeps the CLI offline (no update check, no plugin downloads). Every
 * operation's console output is kept, so a failing test can show what Pulumi printed.
 */
export class TestStack {
  readonly output: string[] = [];

  private constructor(
    readonly stack: Stack,
    readonly directory: string,
    private readonly passphrase: string,
  ) {}

  static async create(options: TestStackOptions): Promise<TestStack> {
    const directory = await mkdtemp(join(tmpdir(), `pulumi-${options.projectName}-`));
    const backend = join(directory, "backend");
    await mkdir(backend);
    const passphrase = randomBytes(16).toString("hex");
    const envVars = {
      PULUMI_BACKEND_URL: `file://${backend}`,
      PULUMI_HOME: join(directory, "home"),
      PULUMI_CONFIG_PASSPHRASE: passphrase,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      PULUMI_SKIP_CONFIRMATIONS: "true",
    };
    const stack = await LocalWorkspace.createOrSelectStack(
      { stackName: "test", projectName: options.projectName, program: options.program },
      { workDir: directory, envVars },
    );
    if (options.config) await stack.setAllConfig(options.config);
    return new TestStack(stack, directory, passphrase);
  }

  private readonly onOutput = (line: string) => {
    this.output.push(line);
  };

  up(): Promise<UpResult> {
    return this.stack.up({ onOutput: this.onOutput });
  }
  preview(): Promise<PreviewResult> {
    return this.stack.preview({ onOutput: this.onOutput, diff: true });
  }
  refresh(): Promise<RefreshResult> {
    return this.stack.refresh({ onOutput: this.onOutput });
  }
  destroy(): Promise<DestroyResult> {
    return this.stack.destroy({ onOutput: this.onOutput });
  }

  /** The raw checkpoint file as the file backend stores it, to check what state holds in clear. */
  async stateFileText(): Promise<string> {
    const settings = await this.stack.workspace.projectSettings();
    return readFile(
      join(this.directory, "backend", ".pulumi", "stacks", settings.name, `${this.stack.name}.json`),
      "utf8",
    );
  }

  /** The passphrase that encrypts this stack's secrets: a test can check it never leaks either. */
  get secretsPassphrase(): string {
    return this.passphrase;
  }

  /** Removes the stack and its directory; resources still in it are destroyed first. */
  async dispose(): Promise<void> {
    await this.stack.destroy({ onOutput: this.onOutput }).catch(() => {});
    await rm(this.directory, { recursive: true, force: true });
  }
}
