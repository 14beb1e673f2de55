import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";

/** A real component this project drives, and how to ask it for its version. */
interface Component {
  name: string;
  /** Missing optional components are reported but are not a failure. */
  optional?: boolean;
  /** What it is needed for, shown when it is missing. */
  neededFor: string;
  version: () => Promise<string | undefined>;
}

export interface ComponentReport {
  name: string;
  optional: boolean;
  version?: string;
  neededFor: string;
}

async function firstLine(file: string, args: string[]): Promise<string | undefined> {
  const result = await execa(file, args, { reject: false, all: true });
  if (result.failed) return undefined;
  return result.all
    ?.split("\n")
    .find((line) => line.trim() !== "")
    ?.trim();
}

async function onPath(command: string): Promise<string | undefined> {
  return (await execa("sh", ["-c", `command -v ${command}`], { reject: false })).stdout || undefined;
}

/** Where scripts/setup.sh writes the environment of the tools it installs (scripts/lib.sh). */
function setupEnvironmentFile(): string {
  const tools =
    process.env.SLAPOS_TOOLS_DIR ??
    (process.getuid?.() === 0
      ? "/opt/pulumi-slapos"
      : join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "pulumi-slapos"));
  return join(tools, "env.sh");
}

/**
 * Run outside `scripts/with-env.sh`, the doctor would not see what the setup installed (the
 * Pulumi CLI, the venv): it loads the setup's environment file itself, which holds only
 * `export NAME='value'` lines and PATH ones (`export PATH='dir':"$PATH"`, `export PATH="$PATH":'dir'`). Returns the file it loaded.
 */
export async function loadSetupEnvironment(): Promise<string | undefined> {
  if (process.env.SLAPOS_VENV) return undefined;
  const file = setupEnvironmentFile();
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  for (const line of text.split("\n")) {
    const first = /^export PATH='([^']*)':"\$PATH"$/.exec(line);
    const last = /^export PATH="\$PATH":'([^']*)'$/.exec(line);
    if (first?.[1] || last?.[1]) {
      process.env.PATH = first?.[1]
        ? `${first[1]}:${process.env.PATH ?? ""}`
        : `${process.env.PATH ?? ""}:${last?.[1]}`;
      continue;
    }
    const variable = /^export ([A-Z_][A-Z0-9_]*)='([^']*)'$/.exec(line);
    if (variable?.[1]) process.env[variable[1]] = variable[2];
  }
  return file;
}

function venvPath(): string {
  return process.env.SLAPOS_VENV ?? "/opt/pulumi-slapos/venv";
}

const components: Component[] = [
  { name: "node", neededFor: "everything", version: async () => process.version },
  {
    name: "@pulumi/pulumi",
    neededFor: "the Pulumi provider",
    version: async () => createRequire(import.meta.url)("@pulumi/pulumi/package.json").version,
  },
  {
    name: "pulumi",
    neededFor: "pulumi up (the provider's users, the demo)",
    version: () => firstLine("pulumi", ["version"]),
  },
  {
    name: "pulumi-resource-pulumi-nodejs",
    neededFor: "dynamic resources in pulumi up",
    version: () => onPath("pulumi-resource-pulumi-nodejs"),
  },
  {
    name: "pulumi-language-nodejs",
    optional: true,
    neededFor: "pulumi up in a project directory; Automation API programs (tests, demo) run without it",
    version: () => onPath("pulumi-language-nodejs"),
  },
  {
    name: "zc.buildout",
    neededFor: "installing software releases",
    version: () => firstLine(`${venvPath()}/bin/buildout`, ["--version"]),
  },
  {
    name: "supervisord",
    neededFor: "running instance processes",
    version: () => firstLine(`${venvPath()}/bin/supervisord`, ["--version"]),
  },
  {
    name: "slapos.core",
    neededFor: "the interop peer (real SlapOS node and client)",
    version: () => firstLine(`${venvPath()}/bin/slapos`, ["--version"]),
  },
  {
    name: "postgres",
    neededFor: "the master on a Postgres server",
    version: () =>
      firstLine("sh", ["-c", "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/postgres --version"]),
  },
  {
    name: "sshd",
    neededFor: "test hosts",
    version: () => firstLine("sh", ["-c", "/usr/sbin/sshd -V 2>&1 || true"]),
  },
  { name: "iproute2", neededFor: "partition addresses, test hosts", version: () => firstLine("ip", ["-V"]) },
];

/** Finds every real component and its version; missing ones have no version. */
export async function inspectComponents(): Promise<ComponentReport[]> {
  return Promise.all(
    components.map(async ({ name, optional = false, neededFor, version }) => ({
      name,
      optional,
      neededFor,
      version: await version().catch(() => undefined),
    })),
  );
}

export function formatReport(reports: ComponentReport[]): string {
  const width = Math.max(...reports.map((report) => report.name.length));
  return reports
    .map((report) =>
      report.version
        ? `  ${report.name.padEnd(width)}  ${report.version}`
        : `  ${report.name.padEnd(width)}  ${report.optional ? "not found" : "MISSING"} (needed for ${report.neededFor})`,
    )
    .join("\n");
}
