import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { Agent, request } from "undici";
import { postgresArguments } from "../master/db/connect.js";
import { type MasterProcess, spawnMaster } from "../master/spawn.js";
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
  desiredState: {
    bytes: number;
    /** As fast as `readers` clients can read: throughput. */
    closedLoop: { readers: number; perSecond: number; latency: LatencySummary };
    /** `pollers` nodes reading about once a second each: the latency a node sees. */
    pollers: { pollers: number; perSecond: number; latency: LatencySummary };
    /** `pollers` nodes long-polling: from a change to each node's answer. */
    longPollWake: { pollers: number; changes: number; latency: LatencySummary };
  };
  masterRss: { currentMb: number; peakMb: number };
}

const RELEASE = "https://example.com/software/bench/software.cfg";

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

/**
 * Runs `read` in `workers` loops for `seconds`, timing each read; with `pause`, each loop waits
 * that long (untimed) between reads, as a node polling on a schedule does.
 */
async function timedLoop(workers: number, seconds: number, read: () => Promise<void>, pause?: () => number) {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await Promise.all(
    Array.from({ length: workers }, async () => {
      if (pause) {
        // Nodes are not synchronised: each starts at its own moment, on a connection it already has.
        await sleep(pause());
        await read();
      }
      while (performance.now() < deadline) {
        const begin = performance.now();
        await read();
        latencies.push(performance.now() - begin);
        if (pause) await sleep(pause());
      }
    }),
  );
  return { perSecond: latencies.length / ((performance.now() - started) / 1000), latencies };
}

export async function benchMaster(
  options: MasterBenchOptions,
  log: (line: string) => void,
): Promise<MasterBenchResult> {
  const name = `slapos_bench_${Date.now()}`;
  const server = postgres(...postgresArguments(options.databaseUrl));
  await server.unsafe(`create database ${name}`);
  const url = new URL(options.databaseUrl);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const dataDir = await mkdtemp(join(tmpdir(), "slap-bench-"));
  let master: MasterProcess | undefined;
  let client: MasterClient | undefined;
  const sql = postgres(...postgresArguments(databaseUrl));
  try {
    master = await spawnMaster(["--data", dataDir, "--port", "0", "--database-url", databaseUrl]);
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
    // A lean reader (undici.request, body read as text, not parsed): the load generator shares
    // the machine's two cores with the master and Postgres, so it must cost little.
    const reader = new Agent({ connect: { ca: admin.ca, cert: admin.certificate, key: admin.key } });
    const readUrl = new URL(`api/v1/computers/${target}/desired-state`, master.url);
    const readOnce = async () => {
      const response = await request(readUrl, { dispatcher: reader });
      await response.body.text();
      if (response.statusCode !== 200) throw new Error(`desired state: HTTP ${response.statusCode}`);
    };

    log(
      `desired state: ${sample.partitions.length} partitions, ${bytes} bytes; closed loop, ${options.concurrency} readers`,
    );
    const closedLoop = await timedLoop(options.concurrency, options.pollSeconds, readOnce);

    log(`desired state: ${options.pollers} pollers reading once a second for ${options.pollSeconds} s`);
    const openLoop = await timedLoop(
      options.pollers,
      options.pollSeconds,
      readOnce,
      () => 500 + Math.random() * 1000,
    );

    log(`long poll: ${options.pollers} nodes waiting, woken by 20 changes`);
    const wakeLatencies: number[] = [];
    let version = (await client.desiredState(target)).version;
    for (let change = 0; change < 20; change++) {
      const waiting = Array.from({ length: options.pollers }, async () => {
        const response = await request(new URL(`${readUrl}?after=${version}&wait=60`), {
          dispatcher: reader,
        });
        const document = JSON.parse(await response.body.text()) as { version: number };
        return { at: performance.now(), version: document.version };
      });
      await new Promise((resolve) => setTimeout(resolve, 300)); // every poll is parked
      const changedAt = performance.now();
      await client.supply(target, `${RELEASE}?change=${change}`);
      const woken = await Promise.all(waiting);
      for (const wake of woken) wakeLatencies.push(wake.at - changedAt);
      version = Math.max(...woken.map((wake) => wake.version));
    }
    await reader.close();

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
        bytes,
        closedLoop: {
          readers: options.concurrency,
          perSecond: closedLoop.perSecond,
          latency: summarize(closedLoop.latencies),
        },
        pollers: {
          pollers: options.pollers,
          perSecond: openLoop.perSecond,
          latency: summarize(openLoop.latencies),
        },
        longPollWake: { pollers: options.pollers, changes: 20, latency: summarize(wakeLatencies) },
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
