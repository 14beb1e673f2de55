import { fileURLToPath } from "node:url";
import { TestNetwork } from "../test/hosts/network.js";
import { formatConfig, runFormat, writeHostFile } from "../test/slave/format-host.js";

// Format's targets (DESIGN.md): 100 partitions (users, directories, IPv6, IPv4, taps) in <= 10 s,
// a no-op re-run in <= 1 s. Measured in a test host (root: it creates a network namespace).

export interface FormatBenchResult {
  partitions: number;
  /** formatNode's own time, inside the host's node process. */
  firstRunMs: number;
  reRunMs: number;
  /** The whole `node` process in the host, start-up included, as an operator would time it. */
  firstRunWallMs: number;
  reRunWallMs: number;
  firstRunChanges: number;
  reRunChanges: number;
}

/** Built as dist/bench/format.js: the repository is two levels up. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
const CONFIG = "/etc/opt/slapos/slapos.cfg";

export async function benchFormat(
  partitions = 100,
  log: (line: string) => void = console.error,
): Promise<FormatBenchResult> {
  if (process.getuid?.() !== 0) throw new Error("the format benchmark creates a test host: run it as root");
  const network = await TestNetwork.create();
  try {
    const host = await network.addHost();
    const config = formatConfig({
      instanceRoot: "/srv/slapgrid",
      softwareRoot: "/opt/slapgrid",
      partitionAmount: partitions,
      interfaceName: "eth0",
      createTap: true,
      alterUser: true,
      alterNetwork: true,
    });
    await writeHostFile(host, CONFIG, config);
    const timed = async () => {
      const started = performance.now();
      const run = await runFormat(host, repoRoot, CONFIG);
      if (!run.ok) throw new Error(`format failed in the benchmark host: ${run.error}`);
      return { ...run, wallMs: performance.now() - started };
    };
    const first = await timed();
    log(
      `first run: ${partitions} partitions, ${first.result.changed.length} changes in ${first.durationMs.toFixed(0)} ms (${first.wallMs.toFixed(0)} ms with node's start-up)`,
    );
    const again = await timed();
    log(
      `re-run: ${again.result.changed.length} changes in ${again.durationMs.toFixed(0)} ms (${again.wallMs.toFixed(0)} ms with node's start-up)`,
    );
    return {
      partitions,
      firstRunMs: Math.round(first.durationMs),
      reRunMs: Math.round(again.durationMs),
      firstRunWallMs: Math.round(first.wallMs),
      reRunWallMs: Math.round(again.wallMs),
      firstRunChanges: first.result.changed.length,
      reRunChanges: again.result.changed.length,
    };
  } finally {
    await network.destroy();
  }
}
