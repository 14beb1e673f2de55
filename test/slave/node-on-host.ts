import { resolve } from "node:path";
import { AGENT_NODE_FLAGS } from "../../slave/node-flags.js";
import type { TestHost } from "../hosts/index.js";

/** The agent as the bootstrapper installs it: one bundled file. */
const CLI = resolve("dist/agent/slap-node.mjs");
export const NODE_CONFIG = "/etc/opt/slapos/slapos.cfg";
export const INSTANCE_ROOT = "/srv/slapgrid";
export const SOFTWARE_ROOT = "/opt/slapgrid";
const AGENT_LOG = "/var/log/slap-agent.log";

export interface NodeSettings {
  masterUrl: string;
  partitionAmount: number;
  /** The node's Python environment (zc.buildout, supervisor); the host must share it (`sharedReadOnly`). */
  pythonEnvironment: string;
  fullPassIntervalSeconds?: number;
  reportIntervalSeconds?: number;
  /** More `[slapos]` lines (`key = value`). */
  extraConfig?: string[];
}

/** The slap agent on a test host, driven through the built CLI as an operator would. */
export class NodeOnHost {
  private agentPid: number | null = null;

  constructor(
    readonly host: TestHost,
    readonly settings: NodeSettings,
  ) {}

  static async install(host: TestHost, settings: NodeSettings, masterCa: string): Promise<NodeOnHost> {
    const config = [
      "[slapos]",
      `master_url = ${settings.masterUrl}`,
      "cert_file = /etc/opt/slapos/ssl/computer.crt",
      "key_file = /etc/opt/slapos/ssl/computer.key",
      "master_ca_file = /etc/opt/slapos/ssl/master-ca.crt",
      `software_root = ${SOFTWARE_ROOT}`,
      `instance_root = ${INSTANCE_ROOT}`,
      `python_environment = ${settings.pythonEnvironment}`,
      "promise_timeout = 20",
      `full_pass_interval = ${settings.fullPassIntervalSeconds ?? 300}`,
      `report_interval = ${settings.reportIntervalSeconds ?? 60}`,
      ...(settings.extraConfig ?? []),
      "",
      "[slapformat]",
      `partition_amount = ${settings.partitionAmount}`,
      "interface_name = eth0",
      "ipv4_local_network = 10.200.0.0/24",
      "create_tap = true",
      "",
    ].join("\n");
    await host.execOrThrow(
      `mkdir -p /etc/opt/slapos/ssl && cat > ${NODE_CONFIG} <<'EOF'\n${config}\nEOF\ncat > /etc/opt/slapos/ssl/master-ca.crt <<'EOF'\n${masterCa}\nEOF`,
    );
    return new NodeOnHost(host, settings);
  }

  /** Registers with a one-time token, which writes the computer's id into the configuration; returns it. */
  async register(token: string): Promise<string> {
    await this.slapOrThrow("register", "--token", token);
    const line = await this.host.execOrThrow(`grep '^computer_id = ' ${NODE_CONFIG}`);
    return line.trim().replace("computer_id = ", "");
  }

  /** `slap node ARGS` on the host, as root. */
  slap(...args: string[]) {
    return this.host.exec(`node ${CLI} node ${args.join(" ")} --config ${NODE_CONFIG} 2>&1`);
  }

  async slapOrThrow(...args: string[]): Promise<string> {
    const result = await this.slap(...args);
    if (result.exitCode !== 0)
      throw new Error(`slap node ${args.join(" ")} failed (${result.exitCode}):\n${result.stdout}`);
    return result.stdout;
  }

  /** Starts `slap node run` in the background as a service would (AGENT_NODE_FLAGS), logging to /var/log/slap-agent.log. */
  async startAgent(): Promise<number> {
    const output = await this.host.execOrThrow(
      `nohup node ${AGENT_NODE_FLAGS.join(" ")} ${CLI} node run --config ${NODE_CONFIG} >> ${AGENT_LOG} 2>&1 < /dev/null & echo $!`,
    );
    this.agentPid = Number(output.trim());
    return this.agentPid;
  }

  /** Kills the agent (SIGKILL: as a crash would), leaving supervisord and the instances alone. */
  async killAgent(signal: "KILL" | "TERM" = "KILL"): Promise<void> {
    if (this.agentPid === null) return;
    await this.host.exec(
      `kill -${signal} ${this.agentPid}; while kill -0 ${this.agentPid} 2>/dev/null; do sleep 0.05; done`,
    );
    this.agentPid = null;
  }

  /** The end of the agent's log and of every partition's service logs, for failure messages. */
  diagnostics(): Promise<string> {
    return this.host.execOrThrow(
      `echo '--- agent log'; tail -n 30 ${AGENT_LOG} 2>/dev/null | cut -c1-600; for log in ${INSTANCE_ROOT}/var/log/partitions/*/*.log; do [ -e "$log" ] && { echo "--- $log"; tail -n 8 "$log"; }; done; echo '--- supervisord'; tail -n 20 ${INSTANCE_ROOT}/var/log/supervisord.log 2>/dev/null; for log in ${SOFTWARE_ROOT}/*/.slap-build.log; do [ -e "$log" ] && { echo "--- $log"; tail -n 15 "$log"; }; done; true`,
    );
  }

  /** The HTTP body of a URL fetched from inside the host, or null when it does not answer. */
  async fetchInside(url: string): Promise<string | null> {
    const result = await this.host.exec(`curl -sS -g --max-time 3 '${url}'`);
    return result.exitCode === 0 ? result.stdout : null;
  }
}

/** Polls until `check` returns a value, or fails with what it was waiting for and the node's logs. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  node?: NodeOnHost,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await new Promise((wait) => setTimeout(wait, 200));
  }
  const log = node ? `\n${await node.diagnostics()}` : "";
  throw new Error(`timed out waiting for ${what}${log}`);
}
