import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readFile, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation/index.js";
import { isProcessAlive } from "../../test/hosts/system.js";
import { webCloud } from "../pulumi/web-cloud.js";
import type { DemoCloud } from "./state.js";

// The main job: a master on the embedded database and two hosts on this machine, then the real
// `pulumi up` of examples/pulumi/web-cloud.ts on them (a Computer, a SoftwareRelease and a
// SoftwareInstance per host); prints the instances' URLs and checks they answer.
//   npm run demo                 bring it up (again: converges, changes nothing when all is there)
//   npm run demo -- --destroy    pulumi destroy, then stop the master and remove the hosts
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
  say(`starting a master and two hosts (process ${child.pid}, log ${logFile})`);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const cloud = await runningCloud();
    if (cloud) return cloud;
    if (child.exitCode !== null || Date.now() > deadline) {
      const tail = (await readFile(logFile, "utf8")).trimEnd().split("\n").slice(-20).join("\n");
      throw new Error(`the demo's master and hosts did not come up; the end of ${logFile}:\n${tail}`);
    }
    await new Promise((wake) => setTimeout(wake, 250));
  }
}

/** The demo's stack: a file backend and Pulumi home of its own, offline, the master from the cloud. */
async function demoStack(cloud: DemoCloud | undefined): Promise<Stack> {
  const passphraseFile = join(directory, "passphrase");
  if (!existsSync(passphraseFile)) {
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await writeFile(passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
  }
  await mkdir(join(directory, "backend"), { recursive: true });
  const envVars = {
    PULUMI_BACKEND_URL: `file://${join(directory, "backend")}`,
    PULUMI_HOME: join(directory, "pulumi-home"),
    PULUMI_CONFIG_PASSPHRASE_FILE: passphraseFile,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
  };
  const hosts = cloud?.hosts ?? [];
  const stack = await LocalWorkspace.createOrSelectStack(
    {
      stackName: "demo",
      projectName: "slapos-demo",
      program: async () => {
        const cloudOfWeb = webCloud({
          hosts: await Promise.all(
            hosts.map(async (host) => ({
              ...host,
              privateKey: pulumi.secret(await readFile(host.privateKeyFile, "utf8")),
            })),
          ),
          release: RELEASE,
          greeting: "Hello",
        });
        return { urls: cloudOfWeb.urls };
      },
    },
    { workDir: directory, envVars },
  );
  if (cloud) await stack.setAllConfig(cloud.stackConfig);
  return stack;
}

const onOutput = (text: string) => process.stdout.write(text);

async function up(): Promise<void> {
  const cloud = (await runningCloud()) ?? (await startCloud());
  say(`master ${cloud.masterUrl}; hosts ${cloud.hosts.map((host) => host.address).join(", ")}`);
  const stack = await demoStack(cloud);
  say("pulumi up");
  const result = await stack.up({ onOutput });
  const urls = (result.outputs.urls?.value ?? []) as string[];
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
    const stack = await demoStack(cloud);
    say("pulumi destroy");
    await stack.destroy({ onOutput });
    say(`stopping the master and removing the hosts (process ${cloud.pid})`);
    process.kill(cloud.pid, "SIGTERM");
    const deadline = Date.now() + 60_000;
    while (isProcessAlive(cloud.pid) && Date.now() < deadline)
      await new Promise((wake) => setTimeout(wake, 200));
    if (isProcessAlive(cloud.pid))
      throw new Error(`process ${cloud.pid} did not stop; see ${join(directory, "cloud.log")}`);
  } else if (existsSync(directory)) {
    say("the demo's master and hosts are not running (their process is gone, and its hosts with it)");
  }
  await rm(directory, { recursive: true, force: true });
  say(`removed ${directory}`);
}

if (process.getuid?.() !== 0) {
  console.error(
    "demo: run it as root: its two hosts are network and mount namespaces with their own sshd on this machine",
  );
  process.exit(1);
}
try {
  await (values.destroy ? destroy() : up());
} catch (error) {
  console.error(`demo: ${(error as Error).message}`);
  process.exit(1);
}
