import {
  agentCommand,
  ensureAgent,
  ensureFile,
  ensureNodeRuntime,
  ensurePythonEnvironment,
  ensureRegistered,
  ensureService,
  nodeConfig,
  readComputerId,
} from "./install.js";
import { REMOTE } from "./layout.js";
import { checkHost, inspectHost } from "./preflight.js";
import { type Progress, step } from "./progress.js";
import { type CommandRecord, RemoteHost, type SshTarget } from "./ssh.js";

export type { Progress, ProgressEvent } from "./progress.js";
export type { SshTarget } from "./ssh.js";

export interface BootstrapOptions {
  target: SshTarget;
  masterUrl: string;
  /** The master's CA certificate (PEM): the node checks the master's server certificate with it. */
  masterCa: string;
  /**
   * A one-time registration token, or a function that makes one; needed (and the function
   * called) only while the host is not registered.
   */
  token?: string | (() => Promise<string>);
  /** The computer this host must be (a rebuild); a host already registered as another is refused. */
  computerId?: string;
  partitionCount: number;
  /** The interface carrying the partitions' addresses (default eth0). */
  interfaceName?: string;
  ipv4LocalNetwork?: string;
  createTap?: boolean;
  /** The wheels of the node's Python environment (scripts/setup.sh builds them: $SLAPOS_WHEELHOUSE). */
  wheelhouse: string;
  /** The agent, one file (`npm run build` makes dist/agent/slap-node.mjs). */
  agentBundle: string;
  /** The Python version the wheelhouse was built for. */
  python?: string;
  /**
   * A URL (http, https or file) under which the instances of a rebuilt node find their backups.
   * Every instance receives it as `[slap-instance] restore-from`; a release that keeps data
   * restores it from there when its data is missing (see examples/software/hello-web).
   */
  restoreFrom?: string;
}

export interface BootstrapResult {
  computerId: string;
  /** The host key the host presented (what to pin next time when it was trusted on first use). */
  hostKey: string;
  /** Steps that changed something; empty when the node was already as asked. */
  changed: string[];
  /** Every command run on the host, secrets masked. */
  commands: CommandRecord[];
}

/** The URL goes into an INI file and a buildout profile: one line, no comment characters. */
function checkRestoreUrl(url: string): void {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new Error(`restoreFrom '${url}' is not a URL; give an http://, https:// or file:// URL`);
  }
  if (!["http:", "https:", "file:"].includes(protocol) || /[\s;#$]/.test(url)) {
    throw new Error(
      `restoreFrom '${url}' must be an http://, https:// or file:// URL without spaces, ';', '#' or '$'`,
    );
  }
}

/**
 * Makes a host reachable over SSH a registered, formatted node running the agent. Every step
 * checks before it acts, so a run interrupted anywhere is finished by the next one, and a run on a
 * healthy node changes nothing.
 */
export async function bootstrap(
  options: BootstrapOptions,
  progress: Progress = () => {},
): Promise<BootstrapResult> {
  if (options.restoreFrom !== undefined) checkRestoreUrl(options.restoreFrom);
  const remote = await step(progress, "connect", async () => {
    const connected = await RemoteHost.connect(options.target);
    return { changed: false, detail: `${connected.name}, host key ${connected.hostKey}`, connected };
  }).then((result) => result.connected);
  const changed: string[] = [];
  const track = async (name: string, work: () => Promise<{ changed: boolean; detail?: string }>) => {
    const result = await step(progress, name, work);
    if (result.changed) changed.push(name);
    return result;
  };
  try {
    const facts = await inspectHost(remote);
    await track("preflight", async () => {
      checkHost(remote.name, facts, {
        masterUrl: options.masterUrl,
        computerId: options.computerId,
        python: options.python ?? "3.11",
        needsTap: options.createTap ?? true,
      });
      return { changed: false, detail: `${facts.os} ${facts.architecture}, Python ${facts.python}` };
    });
    const runtime = await step(progress, "node runtime", () => ensureNodeRuntime(remote, facts));
    if (runtime.changed) changed.push("node runtime");
    await track("python environment", () => ensurePythonEnvironment(remote, options.wheelhouse));
    const agent = await track("agent", () => ensureAgent(remote, options.agentBundle));
    const computerId = options.computerId ?? facts.installed?.computerId ?? undefined;
    await track("configuration", async () => {
      const ca = await ensureFile(remote, REMOTE.masterCaFile, options.masterCa, 0o644);
      const config = await ensureFile(
        remote,
        REMOTE.config,
        nodeConfig({
          masterUrl: options.masterUrl,
          computerId: computerId || undefined,
          partitionCount: options.partitionCount,
          interfaceName: options.interfaceName ?? "eth0",
          ipv4LocalNetwork: options.ipv4LocalNetwork ?? "10.0.0.0/16",
          createTap: options.createTap ?? true,
          restoreFrom: options.restoreFrom,
        }),
        0o644,
      );
      return { changed: ca.changed || config.changed };
    });
    await track("registration", () => ensureRegistered(remote, runtime.node, options.token));
    const registeredId = await readComputerId(remote);
    await track("format", async () => {
      const output = await remote.runOrThrow(`${agentCommand(runtime.node, "format")} 2>&1`, { sudo: true });
      const changes = /"changes":(\d+)/.exec(output)?.[1];
      return { changed: Number(changes ?? 0) > 0, detail: `${changes ?? "?"} changes` };
    });
    await track("agent service", () => ensureService(remote, runtime.node, facts, agent.changed));
    return { computerId: registeredId, hostKey: remote.hostKey, changed, commands: remote.log };
  } finally {
    remote.close();
  }
}
