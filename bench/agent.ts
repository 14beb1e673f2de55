import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TestNetwork } from "../test/hosts/network.js";
import { NodeOnHost } from "../test/slave/node-on-host.js";
import { startNetworkMaster } from "../test/support/network-master.js";
import { summarize } from "./stats.js";

// The agent's targets (DESIGN.md): request -> instance started with its connection parameters
// published, release already installed, median <= 5 s; idle agent RSS <= 100 MB with 100
// partitions. Measured with the real agent (`slap node run`) on a test host against a master on
// this machine, over HTTPS, as in production.

export interface AgentBenchResult {
  partitions: number;
  requests: number;
  /** Milliseconds from the request to the master listing the instance started with its URL. */
  requestToStarted: ReturnType<typeof summarize>;
  /** The agent process while idle, with every partition formatted and `instances` running. */
  idleRssMb: { min: number; max: number };
  instances: number;
}

/** Built as dist/bench/agent.js: the repository is two levels up. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

async function until<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await new Promise((wait) => setTimeout(wait, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function benchAgent(
  options: { partitions: number; requests: number; venv: string },
  log: (line: string) => void,
): Promise<AgentBenchResult> {
  if (process.getuid?.() !== 0) throw new Error("the agent benchmark creates a test host: run it as root");
  const release = join(repoRoot, "examples/software/hello-web/software.cfg");
  const directory = await mkdtemp(join(tmpdir(), "bench-agent-"));
  const network = await TestNetwork.create();
  const running = await startNetworkMaster(network, directory);
  const { master, admin } = running;
  try {
    const host = await network.addHost({ sharedReadOnly: [options.venv] });
    const node = await NodeOnHost.install(
      host,
      { masterUrl: master.url, partitionAmount: options.partitions, pythonEnvironment: options.venv },
      running.ca,
    );
    const computerId = await node.register((await admin.createRegistrationToken()).token);
    log(`formatting ${options.partitions} partitions`);
    await node.slapOrThrow("format");
    const agentPid = await node.startAgent();
    await admin.supply(computerId, release);
    const started = async (title: string) => {
      const instance = (await admin.listInstances()).find((candidate) => candidate.title === title);
      return instance?.reportedState === "started" && instance.connectionParameters["url-ipv4"]
        ? instance
        : null;
    };
    const request = (title: string, port: number) =>
      admin.requestInstance({
        title,
        softwareReleaseUrl: release,
        parameters: { port: String(port) },
        sla: { computer_guid: computerId },
      });
    log("installing the release (first instance)");
    await request("warm-up", 9000);
    await until("the warm-up instance", () => started("warm-up"));

    const durations: number[] = [];
    for (let index = 0; index < options.requests; index += 1) {
      const title = `instance-${index}`;
      const begin = performance.now();
      await request(title, 9001 + index);
      await until(title, () => started(title));
      durations.push(performance.now() - begin);
      log(`${title}: ${(durations.at(-1) ?? 0).toFixed(0)} ms`);
    }

    // Idle: nothing changes any more; sample the agent's RSS over a few long-poll rounds.
    const samples: number[] = [];
    for (let sample = 0; sample < 10; sample += 1) {
      await new Promise((wait) => setTimeout(wait, 1_000));
      const status = await host.execOrThrow(`grep VmRSS /proc/${agentPid}/status`);
      samples.push(Number(/(\d+)/.exec(status)?.[1] ?? 0) / 1024);
    }
    if (process.env.BENCH_VERBOSE) log(await node.diagnostics());
    await node.killAgent("TERM");
    return {
      partitions: options.partitions,
      requests: options.requests,
      requestToStarted: summarize(durations),
      idleRssMb: { min: Math.round(Math.min(...samples)), max: Math.round(Math.max(...samples)) },
      instances: options.requests + 1,
    };
  } finally {
    await running.close();
    await network.destroy();
    await rm(directory, { recursive: true, force: true });
  }
}
