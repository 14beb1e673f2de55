import { fileURLToPath } from "node:url";
import { webCloud } from "../examples/pulumi/web-cloud.js";
import { SelfHostedMaster } from "../provider/index.js";
import { type TestHost, TestNetwork } from "../test/hosts/index.js";
import { TestStack } from "../test/pulumi/harness.js";
import { hostProcesses } from "../test/support/node-host.js";

// The self-hosted cloud's figures, with the real `pulumi up` (Automation API, file backend) on
// bare test hosts: the first up creates only the SelfHostedMaster (seed, node, master instance and
// its PostgreSQL instance, handover), the second adds a web instance on each other host,
// registered with that master. Then the idle memory of the master instance and its database.

export interface SelfHostingBenchResult {
  hosts: number;
  /** Bare host to the self-hosted master answering, its database included. */
  masterUpMs: number;
  /** Then the other hosts bootstrapped against it and their instances answering. */
  instancesUpMs: number;
  noOpUpMs: number;
  destroyMs: number;
  /** Resident memory after a quiet minute: the master process, its relay, and every PostgreSQL process. */
  idleRssMb: { master: number; relay: number; database: number };
}

/** Built as dist/bench/self-hosting.js: the repository is two levels up. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

async function rssMb(host: TestHost, pattern: string): Promise<number> {
  const pids = await hostProcesses(host, pattern);
  let kilobytes = 0;
  for (const pid of pids) {
    const status = await host.exec(`grep VmRSS /proc/${pid}/status`);
    kilobytes += Number(/(\d+)/.exec(status.stdout)?.[1] ?? 0);
  }
  return Math.round(kilobytes / 102.4) / 10;
}

export async function benchSelfHosting(
  options: { hosts: number; quietSeconds: number },
  log: (line: string) => void,
): Promise<SelfHostingBenchResult> {
  if (process.getuid?.() !== 0)
    throw new Error("the self-hosting benchmark creates test hosts: run it as root");
  if (options.hosts < 2) throw new Error("the self-hosting benchmark needs 2 hosts or more (--hosts)");
  const release = `${repoRoot}/examples/software/hello-web/software.cfg`;
  const network = await TestNetwork.create({ outboundNat: true });
  let stack: TestStack | undefined;
  try {
    const hosts: TestHost[] = [];
    for (let index = 0; index < options.hosts; index++) hosts.push(await network.addHost());
    const [first, ...others] = hosts as [TestHost, ...TestHost[]];
    await network.useUpstreamDns(first);
    let withInstances = false;
    stack = await TestStack.create({
      projectName: "bench-self-hosting",
      program: async () => {
        const selfHosted = new SelfHostedMaster("master", {
          ssh: { host: first.ipv4, privateKey: first.privateKey, hostKey: first.hostKeyFingerprint },
        });
        if (withInstances) {
          webCloud({
            hosts: others.map((host) => ({
              name: host.name,
              address: host.ipv4,
              hostKey: host.hostKeyFingerprint,
              privateKey: host.privateKey,
            })),
            release,
            partitionCount: 2,
            master: selfHosted.master,
          });
        }
        return { url: selfHosted.url };
      },
    });
    const test = stack;
    const timed = async (what: string, operation: () => Promise<{ summary: { result: string } }>) => {
      const begin = performance.now();
      const result = await operation();
      const milliseconds = Math.round(performance.now() - begin);
      if (result.summary.result !== "succeeded") {
        throw new Error(`${what} did not succeed:\n${test.output.join("").slice(-4000)}`);
      }
      log(`${what}: ${milliseconds} ms`);
      return milliseconds;
    };
    const masterUpMs = await timed("pulumi up of the self-hosted master", () => test.up());
    withInstances = true;
    const instancesUpMs = await timed(`pulumi up of ${others.length} web nodes against it`, () => test.up());
    const noOpUpMs = await timed("no-op pulumi up", () => test.up());
    log(`${options.quietSeconds} s of quiet before reading memory`);
    await new Promise((wake) => setTimeout(wake, options.quietSeconds * 1000));
    const idleRssMb = {
      master: await rssMb(first, "[s]lap-master.mjs master start"),
      relay: await rssMb(first, "[t]cp-relay.py"),
      database: await rssMb(first, "[p]ostgres"),
    };
    log(
      `idle RSS: master ${idleRssMb.master} MB, relay ${idleRssMb.relay} MB, database ${idleRssMb.database} MB`,
    );
    const destroyMs = await timed("pulumi destroy", () => test.destroy());
    return { hosts: options.hosts, masterUpMs, instancesUpMs, noOpUpMs, destroyMs, idleRssMb };
  } finally {
    await stack?.dispose();
    await network.destroy();
  }
}
