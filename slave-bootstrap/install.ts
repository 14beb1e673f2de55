import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { AGENT_NODE_FLAGS } from "../slave/node-flags.js";
import { REMOTE } from "./layout.js";
import type { HostFacts } from "./preflight.js";
import { type RemoteHost, shellQuote } from "./ssh.js";

export interface StepResult {
  changed: boolean;
  detail?: string;
}

export function sha256(content: string | Buffer): string {
  return createHash("sha256").update(content).digest("hex");
}

export async function remoteSha256(remote: RemoteHost, path: string): Promise<string | null> {
  const result = await remote.run(`sha256sum ${shellQuote(path)} 2>/dev/null | cut -d' ' -f1`, {
    sudo: true,
  });
  return result.stdout.trim() || null;
}

const MINIMUM_NODE_MAJOR = 20;

/**
 * The Node the agent runs on: the host's own when recent enough, else a copy of the controller's
 * (same OS and architecture), else a clear refusal. Returns the command to run it with.
 */
export async function ensureNodeRuntime(
  remote: RemoteHost,
  facts: HostFacts,
): Promise<StepResult & { node: string }> {
  const major = Number(/^v(\d+)/.exec(facts.node ?? "")?.[1] ?? 0);
  if (major >= MINIMUM_NODE_MAJOR)
    return { changed: false, node: "node", detail: `the host's ${facts.node}` };
  const wanted = sha256(await readFile(process.execPath));
  if ((await remoteSha256(remote, REMOTE.nodeBinary)) === wanted) {
    return { changed: false, node: REMOTE.nodeBinary, detail: `${process.version} copied earlier` };
  }
  const controllerArchitecture = { x64: "x86_64", arm64: "aarch64" }[process.arch as string];
  if (process.platform !== "linux" || controllerArchitecture !== facts.architecture) {
    throw new Error(
      `the host has no Node >= ${MINIMUM_NODE_MAJOR} (${facts.node ?? "none"}) and this machine's (${process.platform}/${process.arch}) does not run on ${facts.architecture}: install Node ${MINIMUM_NODE_MAJOR} or later on the host`,
    );
  }
  await remote.upload(REMOTE.nodeBinary, await readFile(process.execPath), 0o755, { sudo: true });
  return { changed: true, node: REMOTE.nodeBinary, detail: `copied ${process.version}` };
}

/** Runs a shell command holding the host's bootstrap lock (waiting for an earlier run that still holds it). */
function underLock(command: string): string {
  return `flock -w 600 /run/slap-bootstrap.lock sh -c ${shellQuote(command)}`;
}

/** The node's Python environment, from the controller's wheelhouse (no PyPI needed on the node). */
export async function ensurePythonEnvironment(remote: RemoteHost, wheelhouse: string): Promise<StepResult> {
  const requirements = await readFile(join(wheelhouse, "requirements.txt"), "utf8");
  const wanted = sha256(requirements);
  const present = await remote.run(`cat ${REMOTE.requirementsStamp} 2>/dev/null`, { sudo: true });
  if (present.stdout.trim() === wanted) return { changed: false, detail: REMOTE.pythonEnvironment };
  const archive = await execa("tar", ["-C", wheelhouse, "-cf", "-", "."], { encoding: "buffer" });
  // Under the host's bootstrap lock: a run cut off by a dropped connection may still be working
  // there, and must finish before this one touches the same files.
  await remote.runOrThrow(
    underLock(`rm -rf ${REMOTE.wheels} && mkdir -p ${REMOTE.wheels} && tar -C ${REMOTE.wheels} -xf -`),
    { sudo: true, input: Buffer.from(archive.stdout) },
  );
  const python = `${REMOTE.pythonEnvironment}/bin/python`;
  await remote.runOrThrow(
    underLock(
      [
        // Each part is checked on its own, so that a run stopped half-way is completed.
        `{ test -x ${python} || python3 -m venv --without-pip ${REMOTE.pythonEnvironment}; }`,
        `{ test -x ${REMOTE.pythonEnvironment}/bin/pip || ${python} -m ensurepip --default-pip >/dev/null; }`,
        `${REMOTE.pythonEnvironment}/bin/pip install --quiet --disable-pip-version-check --no-index --find-links ${REMOTE.wheels} -r ${REMOTE.wheels}/requirements.txt`,
        // Partition users run buildout and supervisord from it.
        `chmod -R a+rX ${REMOTE.pythonEnvironment}`,
        `echo ${wanted} > ${REMOTE.requirementsStamp}`,
      ].join(" && "),
    ),
    { sudo: true, timeoutMs: 600_000 },
  );
  return { changed: true, detail: REMOTE.pythonEnvironment };
}

/** The agent, one bundled file; replaced when the controller has another version (an upgrade). */
export async function ensureAgent(remote: RemoteHost, bundle: string): Promise<StepResult> {
  const content = await readFile(bundle);
  if ((await remoteSha256(remote, REMOTE.agent)) === sha256(content)) return { changed: false };
  await remote.upload(REMOTE.agent, content, 0o755, { sudo: true });
  return { changed: true, detail: `${Math.round(content.length / 1024)} KB` };
}

/** Writes a file when its content differs; says whether it did. */
export async function ensureFile(
  remote: RemoteHost,
  path: string,
  content: string,
  mode: number,
  secret = false,
): Promise<StepResult> {
  if ((await remoteSha256(remote, path)) === sha256(content)) return { changed: false };
  await remote.upload(path, content, mode, { sudo: true, secret });
  return { changed: true, detail: path };
}

export interface NodeSettings {
  masterUrl: string;
  computerId?: string;
  partitionCount: number;
  interfaceName: string;
  ipv4LocalNetwork: string;
  createTap: boolean;
  restoreFrom?: string;
}

/** The node's configuration, in SlapOS's names (slave/config.ts reads it). */
export function nodeConfig(settings: NodeSettings): string {
  return [
    "# Written by the slap bootstrapper; a re-run rewrites it.",
    "[slapos]",
    ...(settings.computerId ? [`computer_id = ${settings.computerId}`] : []),
    `master_url = ${settings.masterUrl}`,
    `cert_file = ${REMOTE.certFile}`,
    `key_file = ${REMOTE.keyFile}`,
    `master_ca_file = ${REMOTE.masterCaFile}`,
    `software_root = ${REMOTE.softwareRoot}`,
    `instance_root = ${REMOTE.instanceRoot}`,
    `python_environment = ${REMOTE.pythonEnvironment}`,
    ...(settings.restoreFrom ? [`restore_from = ${settings.restoreFrom}`] : []),
    "",
    "[slapformat]",
    `partition_amount = ${settings.partitionCount}`,
    `interface_name = ${settings.interfaceName}`,
    `ipv4_local_network = ${settings.ipv4LocalNetwork}`,
    `create_tap = ${settings.createTap}`,
    "",
  ].join("\n");
}

/** `slap-node node ARGS` on the host, as root. */
export function agentCommand(node: string, args: string): string {
  return `${node} ${REMOTE.agent} node ${args} --config ${REMOTE.config}`;
}

/** Registers the computer with a one-time token, unless it already has its certificate. */
export async function ensureRegistered(
  remote: RemoteHost,
  node: string,
  tokenSource: string | (() => Promise<string>) | undefined,
): Promise<StepResult> {
  const registered = await remote.run(
    `test -s ${REMOTE.certFile} && grep -q '^computer_id *= *[^ ]' ${REMOTE.config}`,
    { sudo: true },
  );
  if (registered.exitCode === 0) return { changed: false };
  const token = typeof tokenSource === "function" ? await tokenSource() : tokenSource;
  if (!token) throw new Error(`${remote.name} is not registered yet: give a registration token (--token)`);
  // On standard input, not the command line: there it would show in the host's process list.
  await remote.runOrThrow(agentCommand(node, "register --token-file -"), {
    sudo: true,
    input: `${token}\n`,
    secrets: [token],
  });
  return { changed: true };
}

export async function readComputerId(remote: RemoteHost): Promise<string> {
  const line = await remote.runOrThrow(`sed -n 's/^computer_id *= *//p' ${REMOTE.config}`, { sudo: true });
  return line.trim();
}

/** The script that keeps the agent running where there is no systemd: it restarts it when it exits. */
function serviceScript(node: string): string {
  return [
    "#!/bin/sh",
    "# Written by the slap bootstrapper: runs the node agent, and again whenever it exits.",
    "while :; do",
    `  ${node} ${AGENT_NODE_FLAGS.join(" ")} ${REMOTE.agent} node run --config ${REMOTE.config} >> ${REMOTE.serviceLog} 2>&1`,
    "  sleep 2",
    "done",
    "",
  ].join("\n");
}

function systemdUnit(node: string): string {
  return [
    "[Unit]",
    "Description=SlapOS node agent (slap node run)",
    "After=network-online.target",
    "",
    "[Service]",
    `ExecStart=${node === "node" ? "/usr/bin/env node" : node} ${AGENT_NODE_FLAGS.join(" ")} ${REMOTE.agent} node run --config ${REMOTE.config}`,
    "Restart=always",
    "RestartSec=2",
    // Instances belong to supervisord, which outlives the agent: stopping the agent stops only it.
    "KillMode=process",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

const SERVICE_RUNNING = `pid=$(cat ${REMOTE.servicePid} 2>/dev/null) && [ -n "$pid" ] && grep -q slap-agent-service /proc/$pid/cmdline 2>/dev/null`;

/**
 * The agent as a service: a systemd unit where systemd runs, else a self-supervised daemon.
 * An upgraded agent is restarted; instances keep running (they belong to supervisord).
 */
export async function ensureService(
  remote: RemoteHost,
  node: string,
  facts: HostFacts,
  agentChanged: boolean,
): Promise<StepResult> {
  if (facts.systemd) {
    const unit = await ensureFile(remote, REMOTE.systemdUnit, systemdUnit(node), 0o644);
    if (unit.changed)
      await remote.runOrThrow("systemctl daemon-reload && systemctl enable slap-agent", { sudo: true });
    const active =
      (await remote.run("systemctl is-active --quiet slap-agent", { sudo: true })).exitCode === 0;
    if (active && !unit.changed && !agentChanged)
      return { changed: false, detail: "systemd unit slap-agent" };
    await remote.runOrThrow("systemctl restart slap-agent", { sudo: true });
    return { changed: true, detail: "systemd unit slap-agent" };
  }
  const script = await ensureFile(remote, REMOTE.serviceScript, serviceScript(node), 0o755);
  const running = (await remote.run(SERVICE_RUNNING, { sudo: true })).exitCode === 0;
  if (running && !script.changed && !agentChanged)
    return { changed: false, detail: "self-supervised daemon" };
  if (running && !script.changed) {
    // Stopping the agent (the loop's child) is enough: the loop starts the new one itself.
    await remote.runOrThrow(`pkill -P $(cat ${REMOTE.servicePid}) || true`, { sudo: true });
    return { changed: true, detail: "agent restarted" };
  }
  await remote.runOrThrow(
    [
      `if ${SERVICE_RUNNING}; then pkill -P $pid; kill $pid; fi`,
      `setsid sh -c 'echo $$ > ${REMOTE.servicePid}; exec sh ${REMOTE.serviceScript}' < /dev/null > /dev/null 2>&1 &`,
      `for i in $(seq 50); do ${SERVICE_RUNNING} && exit 0; sleep 0.1; done; echo 'the agent service did not start' >&2; exit 1`,
    ].join("\n"),
    { sudo: true },
  );
  return { changed: true, detail: "self-supervised daemon" };
}
