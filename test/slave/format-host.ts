import type { FormatResult } from "../../slave/format/index.js";
import type { TestHost } from "../hosts/host.js";

// Runs the built node agent's format inside a test host, so that users, addresses and taps land
// in the host's own /etc and network namespace, never on this machine.

export interface FormatSettings {
  instanceRoot: string;
  softwareRoot: string;
  partitionAmount: number;
  interfaceName: string;
  createTap: boolean;
  alterUser: boolean;
  alterNetwork: boolean;
}

/** One pino line format logged. */
export interface LogLine {
  level: number;
  msg: string;
  partition?: string;
  [key: string]: unknown;
}

export type FormatRun =
  | { ok: true; result: FormatResult; durationMs: number; logs: LogLine[] }
  | { ok: false; error: string; logs: LogLine[] };

export function formatConfig(settings: FormatSettings): string {
  return [
    "[slapos]",
    "computer_id = COMP-FORMAT",
    "master_url = http://127.0.0.1:8443/",
    `instance_root = ${settings.instanceRoot}`,
    `software_root = ${settings.softwareRoot}`,
    "[slapformat]",
    `partition_amount = ${settings.partitionAmount}`,
    `interface_name = ${settings.interfaceName}`,
    "ipv4_local_network = 10.0.0.0/16",
    `create_tap = ${settings.createTap}`,
    `alter_user = ${settings.alterUser}`,
    `alter_network = ${settings.alterNetwork}`,
    "",
  ].join("\n");
}

/** Writes a file inside the host (readable by every user). */
export async function writeHostFile(host: TestHost, path: string, text: string): Promise<void> {
  await host.execOrThrow(
    `mkdir -p "$(dirname '${path}')" && cat > '${path}' <<'FORMAT_EOF'\n${text}\nFORMAT_EOF`,
  );
}

/** The program node runs in the host: format with the given config, the outcome as JSON on stdout. */
function runner(repoRoot: string): string {
  return `
const [{ readNodeConfig }, { formatNode }, { pino }] = await Promise.all([
  import(${JSON.stringify(`${repoRoot}/dist/slave/config.js`)}),
  import(${JSON.stringify(`${repoRoot}/dist/slave/format/index.js`)}),
  import("pino"),
]);
const logger = pino({ base: undefined, timestamp: false }, pino.destination({ dest: 2, sync: true }));
const config = await readNodeConfig(process.argv[2]);
const started = performance.now();
try {
  const result = await formatNode(config, logger);
  process.stdout.write(JSON.stringify({ ok: true, result, durationMs: performance.now() - started }));
} catch (error) {
  process.stdout.write(JSON.stringify({ ok: false, error: error.message }));
}`;
}

/**
 * Runs format in the host with the config at `configPath`, as root or, with `asUser`, as that
 * user (with its own group only). The build must be current: the tests run after `npm run build`.
 */
export async function runFormat(
  host: TestHost,
  repoRoot: string,
  configPath: string,
  asUser?: { user: string; group: string },
): Promise<FormatRun> {
  const drop = asUser ? `setpriv --reuid=${asUser.user} --regid=${asUser.group} --clear-groups -- ` : "";
  const command = `cd '${repoRoot}' && ${drop}node --input-type=module - '${configPath}' <<'FORMAT_EOF'\n${runner(repoRoot)}\nFORMAT_EOF`;
  const { exitCode, stdout, stderr } = await host.exec(command);
  const logs = stderr
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogLine);
  if (exitCode !== 0 || !stdout.startsWith("{")) {
    throw new Error(`format could not run in ${host.name} (exit ${exitCode}): ${stderr}${stdout}`);
  }
  return { ...(JSON.parse(stdout) as FormatRun), logs };
}
