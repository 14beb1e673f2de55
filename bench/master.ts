import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import postgres from "postgres";
import { MasterClient } from "../protocol/client.js";
import { type LatencySummary, summarize } from "./stats.js";

// The master's targets (DESIGN.md): allocation >= 1,000 requests/s against 10,000 computers x
// 100 partitions on Postgres with zero double allocations; desired-state reads of a 100-partition
// computer with 200 concurrent pollers at p99 < 20 ms; master RSS <= 300 MB.

export interface MasterBenchOptions {
  databaseUrl: string;
  computers: number;
  partitionsPerComputer: number;
  requests: number;
  concurrency: number;
  pollers: number;
  pollSeconds: number;
}

export interface MasterBenchResult {
  seedSeconds: number;
  allocation: {
    requests: number;
    seconds: number;
    perSecond: number;
    latency: LatencySummary;
    doubleAllocations: number;
  };
  desiredState: { pollers: number; reads: number; perSecond: number; latency: LatencySummary; bytes: number };
  masterRss: { currentMb: number; peakMb: number };
}

const CLI = join(import.meta.dirname, "../cli/main.js");
const RELEASE = "https://example.com/software/bench/software.cfg";

async function startMasterProcess(
  databaseUrl: string,
  dataDir: string,
): Promise<{ child: ResultPromise; url: string }> {
  const child = execa(
    "node",
    [CLI, "master", "start", "--data", dataDir, "--port", "0", "--database-url", databaseUrl],
    {
      reject: false,
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      const line = chunk.toString().trim();
      if (line.startsWith("http")) resolve(line);
    });
    child.on("exit", (code) => reject(new Error(`the master exited (${code}) before listening`)));
  });
  return { child, url };
}

async function rssOf(pid: number): Promise<{ currentMb: number; peakMb: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { currentMb: Math.round(kb("VmRSS") / 1024), peakMb: Math.round(kb("VmHWM") / 1024) };
}

/** Runs `count` calls of `work` with `concurrency` in flight, timing each. */
async function drive(count: number, concurrency: number, work: (index: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        const index = next++;
        const begin = performance.now();
        await work(index);
        latencies.push(performance.now() - begin);
      }
    }),
  );
  return { seconds: (performance.now() - started) / 1000, latencies };
}

export async function benchMaster(
  options: MasterBenchOptions,
  log: (line: string) => void,
): Promise<MasterBenchResult> {
  const name = `slapos_bench_${Date.now()}`;
  const server = postgres(options.databaseUrl, { max: 1, onnotice: () => {} });
  await server.unsafe(`create database ${name}`);
  const url = new URL(options.databaseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const dataDir = await mkdtemp(join(tmpdir(), "slap-bench-"));
  let master: { child: ResultPromise; url: string } | undefined;
  let client: MasterClient | undefined;
  const sql = postgres(databaseUrl, { max: 4, onnotice: () => {} });
  try {
    master = await startMasterProcess(databaseUrl, dataDir);
    const admin = JSON.parse(await readFile(join(dataDir, "admin.json"), "utf8"));
    client = new MasterClient({
      url: master.url,
      ca: admin.ca,
      certificate: admin.certificate,
      key: admin.key,
    });

    log(`seeding ${options.computers} computers x ${options.partitionsPerComputer} partitions`);
    const seedStart = performance.now();
    await sql`
      insert into computers (id, title, owner_id, region, capabilities, price_per_partition_hour)
      select 'COMP-BENCH' || g, 'bench-' || g, ${admin.personId},
             case when g % 2 = 0 then 'eu' else 'us' end,
             jsonb_build_object('cpu_architecture', 'x86_64', 'cpu_cores', 4 + g % 60, 'memory_mb', 8192),
             (g % 100) / 100.0
      from generate_series(1, ${options.computers}) g`;
    await sql`
      insert into partitions (computer_id, reference, addresses)
      select 'COMP-BENCH' || c, 'slappart' || p,
             jsonb_build_array(jsonb_build_object('interface', 'eth0', 'address', 'fd00::' || to_hex(p + 1), 'netmask', 'ffff:ffff:ffff:ffff::'))
      from generate_series(1, ${options.computers}) c, generate_series(0, ${options.partitionsPerComputer - 1}) p`;
    await sql`analyze`;
    const seedSeconds = (performance.now() - seedStart) / 1000;
    log(`seeded in ${seedSeconds.toFixed(1)} s`);

    // Warm the connections and the plan caches.
    await drive(200, options.concurrency, (index) =>
      (client as MasterClient).requestInstance({ title: `warm-${index}`, softwareReleaseUrl: RELEASE }),
    );

    log(`allocation: ${options.requests} requests, ${options.concurrency} in flight`);
    const allocation = await drive(options.requests, options.concurrency, (index) =>
      (client as MasterClient).requestInstance({
        title: `bench-${index}`,
        softwareReleaseUrl: RELEASE,
        sla: index % 3 === 0 ? { region: "eu", cpu_cores: "16" } : {},
      }),
    );
    const [doubles] = await sql<{ partitions_twice: number; instances_twice: number }[]>`
      select (select count(*) - count(distinct partition_id) from software_instances where partition_id is not null)::int as partitions_twice,
             (select count(*) - count(distinct instance_id) from partitions where instance_id is not null)::int as instances_twice`;
    const doubleAllocations = (doubles?.partitions_twice ?? 0) + (doubles?.instances_twice ?? 0);

    // One computer with every partition busy: the desired state a node of 100 partitions reads.
    const target = "COMP-BENCH1";
    for (let index = 0; ; index++) {
      const instance = await client.requestInstance({
        title: `poll-${index}`,
        softwareReleaseUrl: RELEASE,
        parameters: { name: `instance-${index}`, port: String(8000 + index) },
        sla: { computer_guid: target },
      });
      if (instance.status === "pending") break;
    }
    const sample = await client.desiredState(target);
    const bytes = JSON.stringify(sample).length;
    log(
      `desired state: ${sample.partitions.length} partitions, ${bytes} bytes; ${options.pollers} pollers for ${options.pollSeconds} s`,
    );
    const latencies: number[] = [];
    const deadline = performance.now() + options.pollSeconds * 1000;
    const pollStart = performance.now();
    await Promise.all(
      Array.from({ length: options.pollers }, async () => {
        while (performance.now() < deadline) {
          const begin = performance.now();
          await (client as MasterClient).desiredState(target);
          latencies.push(performance.now() - begin);
        }
      }),
    );
    const pollElapsed = (performance.now() - pollStart) / 1000;
    const masterRss = await rssOf(master.child.pid as number);

    return {
      seedSeconds,
      allocation: {
        requests: options.requests,
        seconds: allocation.seconds,
        perSecond: options.requests / allocation.seconds,
        latency: summarize(allocation.latencies),
        doubleAllocations,
      },
      desiredState: {
        pollers: options.pollers,
        reads: latencies.length,
        perSecond: latencies.length / pollElapsed,
        latency: summarize(latencies),
        bytes,
      },
      masterRss,
    };
  } finally {
    await client?.close();
    master?.child.kill("SIGTERM");
    await master?.child;
    await sql.end();
    await server.unsafe(`drop database if exists ${name} with (force)`);
    await server.end();
    await rm(dataDir, { recursive: true, force: true });
  }
}
