import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bootstrap } from "../slave-bootstrap/index.js";
import { TestNetwork } from "../test/hosts/network.js";
import { startNetworkMaster } from "../test/support/network-master.js";

// Bootstrap's figures: a fresh test host (its own network namespace, /etc, empty /opt and /srv,
// a real sshd) made a node over SSH against a master on this machine, then the same run again.

export interface BootstrapBenchResult {
  partitions: number;
  firstRunMs: number;
  reRunMs: number;
  firstRunSteps: Record<string, number>;
  commandsFirst: number;
  commandsReRun: number;
}

/** Built as dist/bench/bootstrap.js: the repository is two levels up. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export async function benchBootstrap(
  options: { partitions: number; wheelhouse: string },
  log: (line: string) => void,
): Promise<BootstrapBenchResult> {
  if (process.getuid?.() !== 0)
    throw new Error("the bootstrap benchmark creates a test host: run it as root");
  const directory = await mkdtemp(join(tmpdir(), "bench-bootstrap-"));
  const network = await TestNetwork.create();
  const running = await startNetworkMaster(network, directory);
  const { master, admin } = running;
  try {
    const host = await network.addHost();
    const settings = {
      target: {
        host: host.ipv4,
        user: "root",
        privateKey: host.privateKey,
        hostKey: host.hostKeyFingerprint,
      },
      masterUrl: master.url,
      masterCa: running.ca,
      partitionCount: options.partitions,
      ipv4LocalNetwork: "10.202.0.0/16",
      wheelhouse: options.wheelhouse,
      agentBundle: join(repoRoot, "dist/agent/slap-node.mjs"),
    };
    const steps: Record<string, number> = {};
    const startedAt = new Map<string, number>();
    let begin = performance.now();
    const first = await bootstrap(
      { ...settings, token: (await admin.createRegistrationToken()).token },
      (event) => {
        if (event.status === "started") startedAt.set(event.step, performance.now());
        else steps[event.step] = Math.round(performance.now() - (startedAt.get(event.step) ?? 0));
      },
    );
    const firstRunMs = Math.round(performance.now() - begin);
    log(`first run: ${firstRunMs} ms ${JSON.stringify(steps)}`);
    begin = performance.now();
    const again = await bootstrap(settings);
    const reRunMs = Math.round(performance.now() - begin);
    log(`re-run: ${reRunMs} ms, changed: ${JSON.stringify(again.changed)}`);
    return {
      partitions: options.partitions,
      firstRunMs,
      reRunMs,
      firstRunSteps: steps,
      commandsFirst: first.commands.length,
      commandsReRun: again.commands.length,
    };
  } finally {
    await running.close();
    await network.destroy();
    await rm(directory, { recursive: true, force: true });
  }
}
