import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { TestNetwork } from "../../test/hosts/network.js";
import type { DemoCloud } from "./state.js";

// The demo's machines, kept running in a process of their own between `npm run demo` and
// `npm run demo -- --destroy`: three hosts, each with its own network namespace, /etc, /opt, /srv
// and a real sshd (the first will run the self-hosted master; it reaches PyPI through NAT, as a
// real node reaches the internet, to download its database). The hosts belong to this process
// (their network is torn down if it dies), so it stays until SIGTERM, then removes them.
//
// Usage: node dist/examples/demo/cloud.js DIRECTORY (the demo starts it, detached).

const directory = process.argv[2];
if (!directory) {
  console.error("usage: cloud.js DIRECTORY");
  process.exit(2);
}
const log = pino({ name: "demo-cloud" });

const network = await TestNetwork.create({ outboundNat: true });
const stop = async (signal: string, exitCode = 0) => {
  log.info({ signal }, "removing the demo's hosts");
  await network.destroy();
  await rm(join(directory, "cloud.json"), { force: true });
  process.exit(exitCode);
};
process.once("SIGTERM", () => void stop("SIGTERM"));
process.once("SIGINT", () => void stop("SIGINT"));

try {
  const hosts = [await network.addHost(), await network.addHost(), await network.addHost()];
  await network.useUpstreamDns(hosts[0] as (typeof hosts)[0]);
  await mkdir(join(directory, "keys"), { recursive: true, mode: 0o700 });
  const cloud: DemoCloud = { pid: process.pid, hosts: [] };
  for (const host of hosts) {
    const privateKeyFile = join(directory, "keys", host.name);
    await writeFile(privateKeyFile, host.privateKey, { mode: 0o600 });
    cloud.hosts.push({
      name: host.name,
      address: host.ipv4,
      user: "root",
      hostKey: host.hostKeyFingerprint,
      privateKeyFile,
    });
  }
  // Written last and atomically: its presence means the cloud is up.
  await writeFile(join(directory, "cloud.json.tmp"), JSON.stringify(cloud, null, 2), { mode: 0o600 });
  await rename(join(directory, "cloud.json.tmp"), join(directory, "cloud.json"));
  log.info({ hosts: cloud.hosts.map((host) => host.address) }, "demo hosts up");
  // Nothing else holds the event loop (the hosts are other processes): stay until a signal.
  setInterval(() => {}, 2 ** 30);
} catch (error) {
  log.error({ err: error }, "the demo cloud did not come up");
  await stop("error", 1);
}
