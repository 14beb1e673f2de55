import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { isProcessAlive } from "../../test/hosts/system.js";
import type { DemoCloud } from "./state.js";

// The main job: three hosts on this machine, then the real `pulumi up` of this repository's
// Pulumi project (Pulumi.yaml, program examples/pulumi/index.ts: a self-hosted master on the
// first host, and on each other a Computer, a SoftwareRelease and a SoftwareInstance registered
// with that master), its stack configured with `pulumi config set`; prints the master's and the
// instances' URLs and checks they answer.
//   npm run demo                 bring it up (again: converges, changes nothing when all is there)
//   npm run demo -- --destroy    pulumi destroy, then remove the hosts
// Everything lives in $SLAPOS_DEMO_DIR (default .demo in the current directory).

const { values } = parseArgs({ options: { destroy: { type: "boolean", default: false } } });
const directory = resolve(process.env.SLAPOS_DEMO_DIR ?? ".demo");
const cloudFile = join(directory, "cloud.json");
const say = (line: string) => console.log(`demo: ${line}`);
const RELEASE = fileURLToPath(new URL("../../../examples/software/hello-web/software.cfg", import.meta.url));

async function runningCloud(): Promise<DemoCloud | undefined> {
  if (!existsSync(cloudFile)) return undefined;
  const cloud = JSON.parse(await readFile(cloudFile, "utf8")) as DemoCloud;
  return isProcessAlive(cloud.pid) ? cloud : undefined;
}

/** Starts the cloud process (cloud.ts), detached, and waits until it says it is up. */
async function startCloud(): Promise<DemoCloud> {
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await rm(cloudFile, { force: true });
  const logFile = join(directory, "cloud.log");
  const output = await open(logFile, "a");
  const child = spawn(process.execPath, [fileURLToPath(new URL("./cloud.js", import.meta.url)), directory], {
    detached: true,
    stdio: ["ignore", output.fd, output.fd],
  });
  child.unref();
  await output.close();
  say(`starting three hosts (process ${child.pid}, log ${logFile})`);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const cloud = await runningCloud();
    if (cloud) return cloud;
    if (child.exitCode !== null || Date.now() > deadline) {
      const tail = (await readFile(logFile, "utf8")).trimEnd().split("\n").slice(-20).join("\n");
      throw new Error(`the demo's hosts did not come up; the end of ${logFile}:\n${tail}`);
    }
    await new Promise((wake) => setTimeout(wake, 250));
  }
}

/** This repository: its Pulumi.yaml is the project whose program `pulumi up` runs. */
const PROJECT = fileURLToPath(new URL("../../../", import.meta.url));

/**
 * The real `pulumi` CLI in the project directory, as a user runs it: a file backend, Pulumi home
 * and stack configuration file of the demo's own (nothing written into the repository), offline.
 */
async function pulumi(args: string[], options: { input?: string; show?: boolean } = {}) {
  const passphraseFile = join(directory, "passphrase");
  if (!existsSync(passphraseFile)) {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await writeFile(passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
  }
  await mkdir(join(directory, "backend"), { recursive: true });
  // The stack's configuration file lives with the demo, not in the repository (`stack` takes no such flag).
  const configFile = args[0] === "stack" ? [] : ["--config-file", join(directory, "Pulumi.demo.yaml")];
  const result = await execa("pulumi", [...args, ...configFile], {
    cwd: PROJECT,
    input: options.input,
    stdout: options.show ? "inherit" : "pipe",
    stderr: options.show ? "inherit" : "pipe",
    reject: false,
    env: {
      PULUMI_BACKEND_URL: `file://${join(directory, "backend")}`,
      PULUMI_HOME: join(directory, "pulumi-home"),
      PULUMI_CONFIG_PASSPHRASE_FILE: passphraseFile,
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    },
  });
  if (result.exitCode !== 0) {
    throw new Error(
      `pulumi ${args[0]} failed (${result.exitCode})${options.show ? "" : `: ${result.stderr || result.stdout}`}`,
    );
  }
  return result.stdout ?? "";
}

/** Selects the demo stack and sets its configuration with `pulumi config set`, secrets with `--secret`. */
async function configureStack(cloud: DemoCloud): Promise<void> {
  await pulumi(["stack", "select", "--create", "demo"]);
  // Creating the stack wrote its configuration file (its secrets' salt) into the project: it
  // belongs with the demo's other state, where every later command is pointed at it.
  const created = join(PROJECT, "Pulumi.demo.yaml");
  if (existsSync(created)) await rename(created, join(directory, "Pulumi.demo.yaml"));
  const settings: [string, string, boolean][] = [
    ["hosts", JSON.stringify(cloud.hosts), false],
    ["release", RELEASE, false],
    ["greeting", "Hello", false],
  ];
  for (const [key, value, secret] of settings) {
    // The value on standard input: a secret never shows in a process list.
    await pulumi(["config", "set", ...(secret ? ["--secret"] : []), key], { input: value });
  }
}

async function up(): Promise<void> {
  const cloud = (await runningCloud()) ?? (await startCloud());
  say(`hosts ${cloud.hosts.map((host) => host.address).join(", ")}`);
  await configureStack(cloud);
  say(`pulumi up (project ${PROJECT}, stack demo)`);
  await pulumi(["up", "--yes", "--skip-preview"], { show: true });
  say(`the self-hosted master: ${(await pulumi(["stack", "output", "masterUrl"])).trim()}`);
  const urls = JSON.parse(await pulumi(["stack", "output", "urls", "--json"])) as string[];
  let answered = 0;
  for (const url of urls) {
    const page = await fetch(url, { signal: AbortSignal.timeout(5_000) })
      .then(async (response) => `${response.status} ${(await response.text()).trim()}`)
      .catch((error: Error) => `no answer (${error.message})`);
    if (page.startsWith("200 ")) answered++;
    say(`${url} -> ${page}`);
  }
  say(`${answered} of ${urls.length} instances answer; 'npm run demo -- --destroy' tears it all down`);
  if (answered !== urls.length || urls.length === 0) process.exitCode = 1;
}

async function destroy(): Promise<void> {
  const cloud = await runningCloud();
  if (cloud) {
    await configureStack(cloud);
    say("pulumi destroy");
    await pulumi(["destroy", "--yes", "--skip-preview"], { show: true });
    say(`removing the hosts (process ${cloud.pid})`);
    process.kill(cloud.pid, "SIGTERM");
    const deadline = Date.now() + 60_000;
    while (isProcessAlive(cloud.pid) && Date.now() < deadline)
      await new Promise((wake) => setTimeout(wake, 200));
    if (isProcessAlive(cloud.pid))
      throw new Error(`process ${cloud.pid} did not stop; see ${join(directory, "cloud.log")}`);
  } else if (existsSync(directory)) {
    say("the demo's hosts are not running (their process is gone, and its hosts with it)");
  }
  await rm(directory, { recursive: true, force: true });
  say(`removed ${directory}`);
}

if (process.getuid?.() !== 0) {
  console.error(
    "demo: run it as root: its three hosts are network and mount namespaces with their own sshd on this machine",
  );
  process.exit(1);
}
try {
  await (values.destroy ? destroy() : up());
} catch (error) {
  console.error(`demo: ${(error as Error).message}`);
  process.exit(1);
}
