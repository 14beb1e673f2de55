import { randomBytes, randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { UsageRecord } from "../../protocol/client.js";
import type { LocalPartition } from "../../slave/partitions.js";
import { UsageMeter } from "../../slave/report/index.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { describeWith, requires } from "../support/requirements.js";
import { meterInHost } from "./report-in-host.js";

const MiB = 1024 * 1024;

function partition(reference: string, path: string, uid: number, addresses: string[] = []): LocalPartition {
  return {
    reference,
    index: Number(reference.replace(/\D/g, "")),
    path,
    user: { name: `uid${uid}`, uid, gid: uid },
    addresses: addresses.map((address) => ({
      address,
      netmask: address.includes(":") ? "64" : "255.255.255.0",
    })),
    tap: null,
  };
}

function recordOf(records: UsageRecord[], reference: string): UsageRecord {
  const record = records.find((candidate) => candidate.partitionReference === reference);
  if (record === undefined) throw new Error(`no record for ${reference} in ${JSON.stringify(records)}`);
  return record;
}

/** A pino logger whose lines the test can read. */
function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: "warn" }, { write: (line: string) => lines.push(line) }), lines };
}

async function nftTableExists(table: string): Promise<boolean> {
  return (await execa("nft", ["list", "table", "inet", table], { reject: false })).exitCode === 0;
}

describeWith(
  [
    requires.root("partition directories and processes belong to users other than the test's"),
    requires.command("setpriv", "runs the partition's processes as its user (util-linux)"),
    requires.command("du", "measures partition disk usage (coreutils)"),
    requires.command("nft", "checks that this machine's ruleset is left alone (nftables)"),
  ],
  "usage meter: CPU, memory and disk of partitions on this machine",
  () => {
    // Uids no account uses, so that no other process on this machine is counted as theirs.
    const busyUid = randomInt(3_000_000, 3_500_000);
    const idleUid = busyUid + 1;
    let root: string;
    let stateFile: string;
    let busy: LocalPartition;
    let idle: LocalPartition;
    const started: ResultPromise[] = [];
    const { logger, lines } = capturingLogger();
    let accountingTableExistedBefore: boolean;
    const times: Date[] = [];

    beforeAll(async () => {
      accountingTableExistedBefore = await nftTableExists("slapos_accounting");
      root = await mkdtemp("/tmp/usage-meter-");
      await chmod(root, 0o755);
      stateFile = join(root, "state", "usage.json");
      busy = partition("slappart0", join(root, "slappart0"), busyUid);
      idle = partition("slappart1", join(root, "slappart1"), idleUid);
      for (const { path, user } of [busy, idle]) {
        await mkdir(path);
        await chown(path, user.uid, user.gid);
      }
      await writeFile(join(busy.path, "data"), randomBytes(MiB));
      await chown(join(busy.path, "data"), busyUid, busyUid);
    });

    afterAll(async () => {
      for (const child of started) child.kill("SIGKILL");
      await Promise.allSettled(started);
      await rm(root, { recursive: true, force: true });
    });

    it("returns no record at the first collection, only baselines", async () => {
      const meter = new UsageMeter({ stateFile, alterNetwork: false, logger });
      await meter.ensureAccounting([busy, idle]);
      times.push(new Date());
      expect(await meter.collect([busy, idle], times[0])).toEqual([]);
      const state = JSON.parse(await readFile(stateFile, "utf8"));
      expect(Object.keys(state.baselines).sort()).toEqual(["slappart0", "slappart1"]);
    });

    it("reports the CPU used since, the memory and disk held now, and no traffic without alterNetwork", async () => {
      // Busy for 1 s in one process, which then becomes `sleep` (exec keeps its pid and its CPU time).
      const child = execa(
        "setpriv",
        [
          `--reuid=${busyUid}`,
          `--regid=${busyUid}`,
          "--clear-groups",
          "--",
          "bash",
          "-c",
          // biome-ignore lint/suspicious/noTemplateCurlyInString: bash parameter expansion, not a template
          "end=$(( ${EPOCHREALTIME/./} + 1000000 )); while (( ${EPOCHREALTIME/./} < end )); do :; done; exec sleep 600",
        ],
        { cwd: busy.path, reject: false },
      );
      started.push(child);
      await waitFor(async () => (await readFile(`/proc/${child.pid}/comm`, "utf8")).trim() === "sleep");

      times.push(new Date());
      const records = await new UsageMeter({ stateFile, alterNetwork: false, logger }).collect(
        [busy, idle],
        times[1],
      );
      expect(records).toHaveLength(2);
      const used = recordOf(records, "slappart0");
      expect(used).toMatchObject({
        periodStart: times[0]?.toISOString(),
        periodEnd: times[1]?.toISOString(),
        networkRxBytes: 0,
        networkTxBytes: 0,
      });
      const elapsedSeconds = ((times[1]?.getTime() ?? 0) - (times[0]?.getTime() ?? 0)) / 1000;
      expect(used.cpuSeconds).toBeGreaterThanOrEqual(0.5);
      expect(used.cpuSeconds).toBeLessThanOrEqual(elapsedSeconds);
      expect(used.memoryBytes).toBeGreaterThan(0);
      expect(used.diskBytes).toBeGreaterThanOrEqual(MiB);
      expect(used.diskBytes).toBeLessThan(2 * MiB);
      expect(recordOf(records, "slappart1")).toMatchObject({ cpuSeconds: 0, memoryBytes: 0 });
      expect(recordOf(records, "slappart1").diskBytes).toBeLessThan(64 * 1024);
      expect(await nftTableExists("slapos_accounting")).toBe(accountingTableExistedBefore);
    });

    it("continues from the saved baselines after a restart instead of counting again", async () => {
      times.push(new Date());
      const records = await new UsageMeter({ stateFile, alterNetwork: false, logger }).collect(
        [busy, idle],
        times[2],
      );
      const used = recordOf(records, "slappart0");
      expect(used.periodStart).toBe(times[1]?.toISOString());
      expect(used.cpuSeconds).toBeLessThan(0.2);
      expect(used.memoryBytes).toBeGreaterThan(0);
    });

    it("never reports a negative amount when the partition's processes exit", async () => {
      const child = started[0];
      child?.kill("SIGKILL");
      await child;
      const records = await new UsageMeter({ stateFile, alterNetwork: false, logger }).collect([busy, idle]);
      expect(recordOf(records, "slappart0")).toMatchObject({ cpuSeconds: 0, memoryBytes: 0 });
    });

    it("starts a baseline for a new partition and forgets a removed one", async () => {
      const meter = new UsageMeter({ stateFile, alterNetwork: false, logger });
      expect((await meter.collect([busy])).map((record) => record.partitionReference)).toEqual(["slappart0"]);
      expect(Object.keys(JSON.parse(await readFile(stateFile, "utf8")).baselines)).toEqual(["slappart0"]);
      expect((await meter.collect([busy, idle])).map((record) => record.partitionReference)).toEqual([
        "slappart0",
      ]);
    });

    it("does not attribute processes of a uid shared by two partitions", async () => {
      const sleeper = execa(
        "setpriv",
        [`--reuid=${busyUid}`, `--regid=${busyUid}`, "--clear-groups", "sleep", "600"],
        {
          reject: false,
        },
      );
      started.push(sleeper);
      await waitFor(async () => (await readFile(`/proc/${sleeper.pid}/comm`, "utf8")).trim() === "sleep");
      const meter = new UsageMeter({ stateFile, alterNetwork: false, logger });
      expect(recordOf(await meter.collect([busy]), "slappart0").memoryBytes).toBeGreaterThan(0);

      const twin = partition("slappart2", idle.path, busyUid);
      await meter.collect([busy, twin]);
      const records = await meter.collect([busy, twin]);
      expect(records.map(({ cpuSeconds, memoryBytes }) => cpuSeconds + memoryBytes)).toEqual([0, 0]);
      expect(lines.join("")).toContain("shared with another partition");
    });

    it("starts over, with a warning, from a state file that is not valid", async () => {
      await writeFile(stateFile, "{ not json");
      const meter = new UsageMeter({ stateFile, alterNetwork: false, logger });
      expect(await meter.collect([busy, idle])).toEqual([]);
      expect(lines.join("")).toContain("the usage state is not valid");
      expect((await meter.collect([busy, idle])).length).toBe(2);
    });

    it("removes its state", async () => {
      await new UsageMeter({ stateFile, alterNetwork: false, logger }).removeAccounting();
      expect(existsSync(stateFile)).toBe(false);
    });
  },
);

describeWith(
  [
    ...testHostRequirements,
    requires.command("nft", "counts partition traffic (nftables)"),
    requires.command("ping", "makes traffic to count (iputils-ping)"),
  ],
  "usage meter: partition traffic counted by nftables, inside a test host",
  () => {
    let network: TestNetwork;
    let host: TestHost;
    let peer: TestHost;
    let ipv4: string;
    let ipv6: string;
    let both: LocalPartition;
    /** A table that is not ours, which the meter must leave exactly as it is. */
    const foreignTable = "inet other_firewall";
    let foreignRuleset: string;

    /** Object kind, name and handle of everything in our table: what changes when rules are recreated. */
    const accountingObjects = async () => {
      const listing = JSON.parse(await host.execOrThrow("nft -j list table inet slapos_accounting"));
      return (listing.nftables as Record<string, { name?: string; chain?: string; handle?: number }>[])
        .flatMap((object) => Object.entries(object))
        .filter(([kind]) => kind !== "metainfo")
        .map(([kind, body]) => `${kind} ${body.chain ?? ""} ${body.name ?? ""} ${body.handle}`)
        .sort();
    };
    const counterBytes = async (name: string) => {
      const listing = JSON.parse(
        await host.execOrThrow(`nft -j list counter inet slapos_accounting ${name}`),
      );
      return Number(listing.nftables[1].counter.bytes);
    };

    beforeAll(async () => {
      network = await TestNetwork.create();
      host = await network.addHost();
      peer = await network.addHost();
      ipv4 = `${network.ipv4Prefix}.200`;
      ipv6 = `${network.ipv6Prefix}:c8`;
      both = partition("slappart0", "/srv/slapgrid/slappart0", 3_600_000, [ipv4, ipv6]);
      await host.execOrThrow(
        [
          "set -e",
          `ip addr add ${ipv4}/24 dev eth0`,
          `ip -6 addr add ${ipv6}/64 dev eth0 nodad`,
          `mkdir -p ${both.path}`,
          `nft add table ${foreignTable}`,
          `nft add chain ${foreignTable} input '{ type filter hook input priority 0; policy accept; }'`,
          `nft add rule ${foreignTable} input ip saddr 192.0.2.1 drop`,
        ].join("\n"),
      );
      foreignRuleset = await host.execOrThrow(`nft -a list table ${foreignTable}`);
    }, 120_000);

    afterAll(async () => {
      await network?.destroy();
    }, 60_000);

    it("makes one counter per address and direction in its own table, idempotently", async () => {
      await meterInHost(host, "ensureAccounting", [both]);
      const objects = await accountingObjects();
      const counters = objects.filter((object) => object.startsWith("counter "));
      expect(counters).toHaveLength(4);
      // Sent: output and forward; received: input and forward.
      expect(objects.filter((object) => object.startsWith("rule "))).toHaveLength(8);
      expect(objects.filter((object) => object.startsWith("chain "))).toHaveLength(3);

      expect(await meterInHost(host, "collect", [both])).toEqual([]);
      await meterInHost(host, "ensureAccounting", [both]);
      expect(await accountingObjects()).toEqual(objects);
      expect(await host.execOrThrow(`nft -a list table ${foreignTable}`)).toBe(foreignRuleset);
    });

    it("counts the bytes sent from and to the partition's addresses, and no one else's", async () => {
      const ipv4Packet = 20 + 8 + 1000;
      const ipv6Packet = 40 + 8 + 1000;
      await host.execOrThrow(
        [
          "set -e",
          `ping -q -c 5 -i 0.05 -s 1000 -I ${ipv4} ${peer.ipv4}`,
          `ping -q -6 -c 5 -i 0.05 -s 1000 -I ${ipv6} ${peer.ipv6}`,
          // From the host's own address: not the partition's traffic.
          `ping -q -c 5 -i 0.05 -s 1000 -I ${host.ipv4} ${peer.ipv4}`,
        ].join("\n"),
      );
      await peer.execOrThrow(`ping -q -c 3 -i 0.05 -s 1000 ${ipv4}`);

      const [record] = (await meterInHost(host, "collect", [both])) ?? [];
      // Each way: 5 IPv4 and 5 IPv6 echoes of ours, 3 IPv4 echoes of the peer's.
      const expected = 8 * ipv4Packet + 5 * ipv6Packet;
      // Neighbour discovery adds a few small packets; the host's own 5 echoes (5 kB) must not appear.
      const slack = 2_000;
      expect(record?.networkTxBytes).toBeGreaterThanOrEqual(expected);
      expect(record?.networkTxBytes).toBeLessThan(expected + slack);
      expect(record?.networkRxBytes).toBeGreaterThanOrEqual(expected);
      expect(record?.networkRxBytes).toBeLessThan(expected + slack);
      expect(record?.cpuSeconds).toBe(0);
    });

    it("keeps the other counters when an address goes away, and counts a recreated counter from zero", async () => {
      const ipv4Only = { ...both, addresses: both.addresses.filter(({ address }) => address === ipv4) };
      const before = await accountingObjects();
      const sentBefore = await counterBytes(`tx_${ipv4}`);
      await meterInHost(host, "ensureAccounting", [ipv4Only]);
      const after = await accountingObjects();
      expect(after.filter((object) => object.startsWith("counter "))).toHaveLength(2);
      expect(after.filter((object) => object.startsWith("rule "))).toHaveLength(4);
      expect(after.every((object) => before.includes(object))).toBe(true);
      expect(await counterBytes(`tx_${ipv4}`)).toBeGreaterThanOrEqual(sentBefore);

      // The rules are recreated (say by a firewall reload): counters restart below the baseline.
      await host.execOrThrow("nft delete table inet slapos_accounting");
      await meterInHost(host, "ensureAccounting", [ipv4Only]);
      await host.execOrThrow(`ping -q -c 2 -i 0.05 -s 1000 -I ${ipv4} ${peer.ipv4}`);
      const [record] = (await meterInHost(host, "collect", [ipv4Only])) ?? [];
      expect(record?.networkTxBytes).toBeGreaterThanOrEqual(2 * 1028);
      expect(record?.networkTxBytes).toBeLessThan(2 * 1028 + 1_000);
      expect(record?.networkRxBytes).toBeGreaterThanOrEqual(2 * 1028);
      expect(record?.networkRxBytes).toBeLessThan(2 * 1028 + 1_000);
    });

    it("removes its table and its state, and nothing else", async () => {
      await meterInHost(host, "removeAccounting");
      expect((await host.exec("nft list table inet slapos_accounting")).exitCode).not.toBe(0);
      expect((await host.exec("test -e /root/usage-state.json")).exitCode).not.toBe(0);
      expect(await host.execOrThrow(`nft -a list table ${foreignTable}`)).toBe(foreignRuleset);
      // Removing twice is fine (an uninstall that is run again).
      await meterInHost(host, "removeAccounting");
    });
  },
);

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}
