import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultPromise } from "execa";
import { Agent, request } from "undici";
import { spawnMaster } from "../master/spawn.js";
import { marshal } from "../protocol/xml-marshaller.js";
import { startSlapproxy } from "./slapproxy.js";
import { type LatencySummary, summarize } from "./stats.js";

// getFullComputerInformation for a 100-partition computer, the call every node makes on every
// pass: our master against the real slapproxy (slapos.core), in the same run, over the same
// plain HTTP, prepared by the same SLAP calls. Target: >= 10x slapproxy's throughput.

export interface SlapBenchOptions {
  venv: string;
  partitions: number;
  readers: number;
  seconds: number;
}

export interface PeerFigures {
  perSecond: number;
  latency: LatencySummary;
  bytes: number;
}

export interface SlapBenchResult {
  slapproxy: PeerFigures;
  master: PeerFigures;
  ratio: number;
}

const COMPUTER = "COMP-BENCH";
const RELEASE = "https://example.com/software/bench/software.cfg";

/** The same classic SLAP calls against either server. */
class SlapPeer {
  private readonly agent = new Agent({ connections: 64 });

  constructor(readonly url: string) {}

  async post(method: string, fields: Record<string, string>): Promise<void> {
    const response = await request(new URL(method, this.url), {
      method: "POST",
      dispatcher: this.agent,
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    });
    const body = await response.body.text();
    if (response.statusCode >= 300)
      throw new Error(`${method}: HTTP ${response.statusCode}: ${body.slice(0, 300)}`);
  }

  async fullComputerInformation(): Promise<number> {
    const response = await request(new URL(`getFullComputerInformation?computer_id=${COMPUTER}`, this.url), {
      dispatcher: this.agent,
    });
    const body = await response.body.text();
    if (response.statusCode !== 200)
      throw new Error(`getFullComputerInformation: HTTP ${response.statusCode}`);
    return body.length;
  }

  /** Formats the computer and fills every partition, as format and `slapos request` would. */
  async prepare(partitions: number): Promise<void> {
    const layout = {
      reference: COMPUTER,
      address: "10.0.0.1",
      netmask: "255.255.255.0",
      partition_list: Array.from({ length: partitions }, (_, index) => ({
        reference: `slappart${index}`,
        tap: { name: `slaptap${index}` },
        address_list: [
          { addr: `10.0.${Math.floor(index / 200)}.${10 + (index % 200)}`, netmask: "255.255.255.0" },
          { addr: `fd00::${(index + 16).toString(16)}`, netmask: "64" },
        ],
      })),
    };
    await this.post("loadComputerConfigurationFromXML", { xml: marshal(layout) });
    await this.post("supplySupply", { url: RELEASE, computer_id: COMPUTER, state: "available" });
    for (let index = 0; index < partitions; index++) {
      await this.post("requestComputerPartition", {
        software_release: RELEASE,
        software_type: "default",
        partition_reference: `instance-${index}`,
        partition_parameter_xml: marshal({ name: `instance-${index}`, port: String(8000 + index) }),
        filter_xml: marshal({ computer_guid: COMPUTER }),
        shared_xml: marshal(false),
        state: marshal(null),
      });
    }
  }

  async measure(readers: number, seconds: number): Promise<PeerFigures> {
    const bytes = await this.fullComputerInformation();
    for (let warm = 0; warm < readers; warm++) await this.fullComputerInformation();
    const latencies: number[] = [];
    const deadline = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: readers }, async () => {
        while (performance.now() < deadline) {
          const begin = performance.now();
          await this.fullComputerInformation();
          latencies.push(performance.now() - begin);
        }
      }),
    );
    return {
      perSecond: latencies.length / ((performance.now() - started) / 1000),
      latency: summarize(latencies),
      bytes,
    };
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

export async function benchSlap(
  options: SlapBenchOptions,
  log: (line: string) => void,
): Promise<SlapBenchResult> {
  const directory = await mkdtemp(join(tmpdir(), "slap-bench-"));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  let proxy: ResultPromise | undefined;
  let master: Awaited<ReturnType<typeof spawnMaster>> | undefined;
  try {
    log(`slapproxy: preparing ${options.partitions} partitions`);
    const started = (await startSlapproxy(options.venv, directory, port, COMPUTER)).child;
    proxy = started;
    const proxyPeer = new SlapPeer(`http://127.0.0.1:${port}/`);
    await proxyPeer.prepare(options.partitions);
    log(`slapproxy: ${options.readers} readers for ${options.seconds} s`);
    const slapproxy = await proxyPeer.measure(options.readers, options.seconds);
    await proxyPeer.close();
    proxy = undefined;
    started.kill("SIGTERM");
    await started;

    log(
      `master (embedded PGlite, --insecure-http like slapproxy): preparing ${options.partitions} partitions`,
    );
    master = await spawnMaster(["--data", join(directory, "master"), "--port", "0", "--insecure-http"]);
    const masterPeer = new SlapPeer(master.url);
    await masterPeer.prepare(options.partitions);
    log(`master: ${options.readers} readers for ${options.seconds} s`);
    const ours = await masterPeer.measure(options.readers, options.seconds);
    await masterPeer.close();
    return { slapproxy, master: ours, ratio: ours.perSecond / slapproxy.perSecond };
  } finally {
    proxy?.kill("SIGKILL");
    if (master) {
      master.child.kill("SIGTERM");
      await master.child;
    }
    await rm(directory, { recursive: true, force: true });
  }
}
