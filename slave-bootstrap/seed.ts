import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import type { ClientConfig } from "../master/server.js";
import { remoteSha256, type StepResult, sha256 } from "./install.js";
import { REMOTE } from "./layout.js";
import { type RemoteHost, shellQuote } from "./ssh.js";

// The steps that turn a host into the first node of a self-hosted cloud: a seed master on the
// host (SlapOS starts its master from a slapproxy the same way), then the handover of the seed's
// whole state to the master instance, and the node re-pointed to that instance.

async function filesUnder(directory: string): Promise<string[]> {
  const entries = await readdir(directory, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(directory, join(entry.parentPath, entry.name)))
    .sort();
}

/**
 * Copies a software release directory to the host under `REMOTE.releases/<name>`, readable by the
 * software user who builds it; files already there with the same content are left alone.
 * Returns the release's URL on the host (its `software.cfg`).
 */
export async function ensureRelease(
  remote: RemoteHost,
  name: string,
  localDirectory: string,
): Promise<StepResult & { url: string }> {
  const target = `${REMOTE.releases}/${name}`;
  const url = `${target}/software.cfg`;
  const files = await filesUnder(localDirectory);
  if (!files.includes("software.cfg")) {
    throw new Error(
      `${localDirectory} holds no software.cfg: it is not a software release (run 'npm run build')`,
    );
  }
  const listing = await remote.run(
    `cd ${shellQuote(target)} 2>/dev/null && find . -type f -exec sha256sum {} +`,
    {
      sudo: true,
    },
  );
  const present = new Map(
    listing.stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => {
        const [digest, path] = line.split(/\s+\.\//);
        return [path ?? "", digest ?? ""] as const;
      }),
  );
  let copied = 0;
  for (const file of files) {
    const content = await readFile(join(localDirectory, file));
    if (present.get(file) === sha256(content)) continue;
    await remote.upload(`${target}/${file}`, content, 0o644, { sudo: true });
    copied += 1;
  }
  // upload() creates directories private to root; the software user reads the release.
  if (copied > 0) await remote.runOrThrow(`chmod -R a+rX ${shellQuote(REMOTE.releases)}`, { sudo: true });
  return { changed: copied > 0, detail: `${name}: ${copied} of ${files.length} files copied`, url };
}

export interface SeedSettings {
  /** The Node that runs the master's bundle on the host (the agent's). */
  node: string;
  /** The address the seed listens on, which the controller and the host's agent reach it at. */
  address: string;
  port: number;
}

export function seedUrl(settings: Pick<SeedSettings, "address" | "port">): string {
  const host = settings.address.includes(":") ? `[${settings.address}]` : settings.address;
  return `https://${host}:${settings.port}/`;
}

const SEED_RUNNING = `pid=$(cat ${REMOTE.seedServicePid} 2>/dev/null) && [ -n "$pid" ] && grep -q slap-seed-service /proc/$pid/cmdline 2>/dev/null`;

function seedServiceScript(settings: SeedSettings): string {
  const cli = `${REMOTE.releases}/master/slap-master.mjs`;
  return [
    "#!/bin/sh",
    "# Written by the slap bootstrapper: the seed master of a self-hosted cloud, restarted when it exits.",
    "umask 077",
    "while :; do",
    `  ${settings.node} ${cli} master start --data ${REMOTE.seedData} --host ${settings.address} --port ${settings.port} --public-url ${seedUrl(settings)} >> ${REMOTE.seedLog} 2>&1`,
    "  sleep 2",
    "done",
    "",
  ].join("\n");
}

/**
 * Runs the seed master on the host (embedded database in `REMOTE.seedData`) until it answers, and
 * returns its admin's client configuration (which the master instance inherits with the state).
 */
export async function ensureSeedMaster(
  remote: RemoteHost,
  settings: SeedSettings,
): Promise<StepResult & { admin: ClientConfig }> {
  const script = await remote.run(`cat ${REMOTE.seedServiceScript} 2>/dev/null`, { sudo: true });
  const wanted = seedServiceScript(settings);
  const running = (await remote.run(SEED_RUNNING, { sudo: true })).exitCode === 0;
  let changed = false;
  if (script.stdout !== wanted || !running) {
    if (script.stdout !== wanted)
      await remote.upload(REMOTE.seedServiceScript, wanted, 0o700, { sudo: true });
    await remote.runOrThrow(
      [
        `if ${SEED_RUNNING}; then pkill -P $pid; kill $pid; fi`,
        `mkdir -p ${REMOTE.seedData} && chmod 700 ${REMOTE.seedData}`,
        `setsid sh -c 'echo $$ > ${REMOTE.seedServicePid}; exec sh ${REMOTE.seedServiceScript}' < /dev/null > /dev/null 2>&1 &`,
      ].join("\n"),
      { sudo: true },
    );
    changed = true;
  }
  // The master writes admin.json at its first start, and then listens.
  const answered = await remote.run(
    [
      "for i in $(seq 600); do",
      `  if [ -s ${REMOTE.seedData}/admin.json ] && ${settings.node} -e 'require("net").connect(${settings.port}, ${JSON.stringify(settings.address)}).on("connect", () => process.exit(0)).on("error", () => process.exit(1))'; then exit 0; fi`,
      "  sleep 0.2",
      "done",
      "exit 1",
    ].join("\n"),
    { sudo: true, timeoutMs: 180_000 },
  );
  if (answered.exitCode !== 0) {
    const log = await remote.run(`tail -n 20 ${REMOTE.seedLog} 2>/dev/null`, { sudo: true });
    throw new Error(
      `${remote.name}: the seed master did not start within 2 minutes; the end of ${REMOTE.seedLog}:\n${log.stdout}`,
    );
  }
  return { changed, detail: seedUrl(settings), admin: await readSeedAdmin(remote) };
}

/** The seed's admin, who stays the admin of the master instance after the handover. */
export async function readSeedAdmin(remote: RemoteHost): Promise<ClientConfig> {
  const text = await remote.runOrThrow(`cat ${REMOTE.seedData}/admin.json`, { sudo: true });
  return JSON.parse(text) as ClientConfig;
}

/** Stops the seed master and waits until it is gone (its embedded database is then consistent on disk). */
export async function stopSeedMaster(remote: RemoteHost): Promise<StepResult> {
  const running = (await remote.run(SEED_RUNNING, { sudo: true })).exitCode === 0;
  if (!running) return { changed: false };
  await remote.runOrThrow(
    [
      `pid=$(cat ${REMOTE.seedServicePid})`,
      "children=$(pgrep -P $pid)",
      "kill $pid",
      "for child in $children; do kill $child 2>/dev/null; done",
      "for i in $(seq 100); do",
      '  alive=""; for child in $children; do kill -0 $child 2>/dev/null && alive=1; done',
      '  [ -z "$alive" ] && break; sleep 0.2',
      "done",
      `rm -f ${REMOTE.seedServicePid}`,
    ].join("\n"),
    { sudo: true, timeoutMs: 60_000 },
  );
  return { changed: true, detail: "seed master stopped" };
}

/**
 * Writes the stopped seed's whole state (database and CA) to `REMOTE.handover/seed-backup.json`,
 * readable only by `owner`, the master instance's partition user, who restores it.
 */
export async function handOverSeedState(
  remote: RemoteHost,
  node: string,
  owner: string,
): Promise<StepResult & { path: string }> {
  const path = `${REMOTE.handover}/seed-backup.json`;
  if (!/^[a-z_][a-z0-9_-]*$/.test(owner)) throw new Error(`'${owner}' is not a unix user name`);
  await remote.runOrThrow(
    [
      "set -e",
      `mkdir -p ${REMOTE.handover} && chown root:root ${REMOTE.handover} && chmod 711 ${REMOTE.handover}`,
      `rm -f ${path}.new`,
      `${node} ${REMOTE.releases}/master/slap-master.mjs master backup --data ${REMOTE.seedData} --output ${path}.new`,
      `chown ${owner} ${path}.new && chmod 400 ${path}.new && mv -f ${path}.new ${path}`,
    ].join("\n"),
    { sudo: true, timeoutMs: 180_000 },
  );
  return { changed: true, detail: path, path };
}

/** Removes the handed-over backup (it holds the CA key) once the master instance serves. */
export async function removeHandover(remote: RemoteHost): Promise<void> {
  await remote.runOrThrow(`rm -rf ${REMOTE.handover}`, { sudo: true });
}

/**
 * Points the host's agent at another master of the same CA (its certificate stays valid), and
 * restarts it. Instances keep running: they belong to supervisord.
 */
export async function repointAgent(
  remote: RemoteHost,
  masterUrl: string,
  masterCa: string,
): Promise<StepResult> {
  const config = await remote.runOrThrow(`cat ${REMOTE.config}`, { sudo: true });
  const repointed = config.replace(/^master_url *=.*$/m, `master_url = ${masterUrl}`);
  const caChanged = (await remoteSha256(remote, REMOTE.masterCaFile)) !== sha256(masterCa);
  if (repointed === config && !caChanged) return { changed: false };
  if (caChanged) await remote.upload(REMOTE.masterCaFile, masterCa, 0o644, { sudo: true });
  await remote.upload(REMOTE.config, repointed, 0o644, { sudo: true });
  await remote.runOrThrow(
    [
      "if systemctl is-active --quiet slap-agent 2>/dev/null; then systemctl restart slap-agent; exit 0; fi",
      // The self-supervised loop starts the agent again itself, with the new configuration.
      `pid=$(cat ${REMOTE.servicePid} 2>/dev/null) && pkill -P "$pid" || true`,
    ].join("\n"),
    { sudo: true },
  );
  return { changed: true, detail: masterUrl };
}

/** Removes what self-hosting added to the host (the node itself goes with `uninstall`). */
export const REMOVE_SELF_HOSTING = [
  `if pid=$(cat ${REMOTE.seedServicePid} 2>/dev/null); then pkill -P "$pid"; kill "$pid"; fi 2>/dev/null`,
  `rm -rf ${REMOTE.seedData} ${REMOTE.handover} ${REMOTE.releases} ${REMOTE.seedServiceScript} ${REMOTE.seedServicePid} ${REMOTE.seedLog}`,
  `rmdir --ignore-fail-on-non-empty $(dirname ${REMOTE.seedData}) 2>/dev/null || true`,
].join("\n");
