import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { type HostOptions, TestHost } from "./host.js";
import { RUN_DIR, STATE_DIR } from "./paths.js";
import { isProcessAlive, killPids, run, runQuietly } from "./system.js";

const MAX_SLOTS = 200;

export interface NetworkOptions {
  /**
   * Lets the hosts reach the internet over IPv4 through this machine's default route (nftables
   * masquerade), as real nodes that download software do. Without it, hosts reach nothing beyond
   * the bridge. IPv6 is not forwarded: hosts keep their IPv6 on the bridge only.
   */
  outboundNat?: boolean;
}

/**
 * A bridge on this machine with its own IPv4 /24 and IPv6 /64, to which test hosts attach. Each
 * network owns a slot number (a lock file holding the owner's PID), so test files running in
 * parallel never share addresses, and leftovers of a crashed run are cleaned when their slot is
 * taken again.
 */
export class TestNetwork {
  readonly hosts: TestHost[] = [];

  private constructor(readonly slot: number) {}

  get bridge(): string {
    return `slapbr${this.slot}`;
  }
  get ipv4Prefix(): string {
    return `10.77.${this.slot}`;
  }
  get ipv6Prefix(): string {
    return `fd77:0:${this.slot.toString(16)}:`;
  }
  /** This machine's addresses on the bridge: where hosts reach services run by the tests. */
  get gatewayIpv4(): string {
    return `${this.ipv4Prefix}.1`;
  }
  get gatewayIpv6(): string {
    return `${this.ipv6Prefix}:1`;
  }

  static async create(options: NetworkOptions = {}): Promise<TestNetwork> {
    await prepareRunDir();
    const network = new TestNetwork(await claimSlot());
    try {
      await run("ip", ["link", "add", network.bridge, "type", "bridge"]);
      await run("ip", ["addr", "add", `${network.gatewayIpv4}/24`, "dev", network.bridge]);
      await run("ip", ["-6", "addr", "add", `${network.gatewayIpv6}/64`, "dev", network.bridge, "nodad"]);
      await run("ip", ["link", "set", network.bridge, "up"]);
      if (options.outboundNat) await enableOutboundNat(network.slot);
    } catch (error) {
      await destroySlot(network.slot);
      throw error;
    }
    return network;
  }

  /** Creates the next host on this network, with sshd running and reachable. */
  async addHost(options: HostOptions = {}): Promise<TestHost> {
    const host = await TestHost.create(this, this.hosts.length + 1, options);
    this.hosts.push(host);
    return host;
  }

  /**
   * Gives a host of an `outboundNat` network this machine's DNS servers, as an installed server
   * has (hosts are made without any, see host.ts).
   */
  async useUpstreamDns(host: TestHost): Promise<void> {
    const lines = (await upstreamNameservers()).map((address) => `nameserver ${address}`);
    await host.execOrThrow(`printf '%s\\n' ${lines.map((line) => `'${line}'`).join(" ")} > /etc/resolv.conf`);
  }

  /** Stops every process of every host by PID, removes namespaces, links, mounts and files. */
  async destroy(): Promise<void> {
    await destroySlot(this.slot);
  }
}

async function prepareRunDir(): Promise<void> {
  await mkdir(RUN_DIR, { recursive: true });
  await mkdir(STATE_DIR, { recursive: true, mode: 0o700 });
  // Persistent mount-namespace files may not live on a shared mount (systemd makes / shared).
  const mounts = await readFile("/proc/self/mountinfo", "utf8");
  if (!mounts.split("\n").some((line) => line.split(" ")[4] === RUN_DIR)) {
    await run("mount", ["--bind", RUN_DIR, RUN_DIR]);
    await run("mount", ["--make-private", RUN_DIR]);
  }
}

async function claimSlot(): Promise<number> {
  for (let slot = 1; slot <= MAX_SLOTS; slot++) {
    const lock = `${RUN_DIR}/net-${slot}.lock`;
    try {
      const handle = await open(lock, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      await destroySlot(slot, { keepLock: true }); // leftovers of a run that died before its lock file was written
      return slot;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number.parseInt(await readFile(lock, "utf8").catch(() => ""), 10);
      if (Number.isInteger(owner) && isProcessAlive(owner)) continue;
      await destroySlot(slot);
      slot--; // retry the same slot now that it is free
    }
  }
  throw new Error(`all ${MAX_SLOTS} test network slots are taken (see ${RUN_DIR}/net-*.lock)`);
}

async function destroySlot(slot: number, options: { keepLock?: boolean } = {}): Promise<void> {
  const prefix = `slap${slot}h`;
  const namespaces = (await run("ip", ["netns", "list"]))
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter((name) => name.startsWith(prefix));
  for (const namespace of namespaces) {
    const pids = (await run("ip", ["netns", "pids", namespace])).split(/\s+/).filter(Boolean).map(Number);
    await killPids(pids);
  }
  // The hosts' veth pairs, deleted from this side: that is synchronous, whereas the kernel tears
  // down the devices of a deleted namespace later, and a network made at once in the same slot
  // would find their names taken.
  const veths = (await run("ip", ["-o", "link", "show"]))
    .split("\n")
    .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1] ?? "")
    .filter((name) => name.startsWith(`sv${slot}h`));
  for (const veth of veths) await runQuietly("ip", ["link", "delete", veth]);
  for (const namespace of namespaces) await runQuietly("ip", ["netns", "delete", namespace]);
  for (const entry of await readdir(RUN_DIR)) {
    if (entry.startsWith(`${slot}-`)) {
      await runQuietly("umount", [`${RUN_DIR}/${entry}`]);
      await unlink(`${RUN_DIR}/${entry}`).catch(() => {});
    }
  }
  await runQuietly("ip", ["link", "delete", `slapbr${slot}`]);
  await disableOutboundNat(slot);
  await rm(`${STATE_DIR}/${slot}`, { recursive: true, force: true });
  if (!options.keepLock) await unlink(`${RUN_DIR}/net-${slot}.lock`).catch(() => {});
}

// --- Outbound NAT ---------------------------------------------------------------------------
//
// A network's table `ip slap_test_nat_<slot>` masquerades what its hosts send to the internet and
// keeps everything else out of the bridge. Forwarding is switched on per interface, never
// machine-wide: on the bridge (where the hosts' packets come in) and on the uplink (where the
// answers come in; Linux judges IPv4 forwarding by the incoming interface). The uplink's previous
// setting is recorded when the first such network appears and put back when the last one goes,
// under a lock, since several test files create networks at once.

const NAT_TABLE_PREFIX = "slap_test_nat_";
const NAT_LOCK = `${RUN_DIR}/nat.lock`;
const NAT_UPLINK_RECORD = `${RUN_DIR}/nat-uplink`;

function natTable(slot: number): string {
  return `${NAT_TABLE_PREFIX}${slot}`;
}

async function withNatLock<T>(work: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const handle = await open(NAT_LOCK, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number.parseInt(await readFile(NAT_LOCK, "utf8").catch(() => ""), 10);
      if (Number.isInteger(owner) && !isProcessAlive(owner)) {
        await unlink(NAT_LOCK).catch(() => {});
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${NAT_LOCK} is held by process ${owner}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  try {
    return await work();
  } finally {
    await unlink(NAT_LOCK).catch(() => {});
  }
}

/** The interface of this machine's IPv4 default route. */
async function uplinkInterface(): Promise<string> {
  const route = await run("ip", ["-4", "-o", "route", "show", "default"]);
  const device = / dev (\S+)/.exec(route)?.[1];
  if (!device) throw new Error("outbound NAT needs an IPv4 default route on this machine, and it has none");
  return device;
}

const forwardingSetting = (device: string) => `/proc/sys/net/ipv4/conf/${device}/forwarding`;

async function natTables(): Promise<string[]> {
  const tables = await run("nft", ["list", "tables", "ip"]);
  return tables
    .split("\n")
    .map((line) => line.trim().split(" ")[2] ?? "")
    .filter((name) => name.startsWith(NAT_TABLE_PREFIX));
}

async function enableOutboundNat(slot: number): Promise<void> {
  const bridge = `slapbr${slot}`;
  const uplink = await uplinkInterface();
  const subnet = `10.77.${slot}.0/24`;
  const ruleset = [
    `table ip ${natTable(slot)} {`,
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    ip saddr ${subnet} oifname "${uplink}" masquerade`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname "${bridge}" oifname "${uplink}" ip saddr ${subnet} accept`,
    `    iifname "${uplink}" oifname "${bridge}" ct state established,related accept`,
    // Bridged traffic between the hosts has the bridge on both sides and passes; nothing routed
    // from elsewhere (the uplink, another test network) reaches them.
    `    oifname "${bridge}" iifname != "${bridge}" drop`,
    `    iifname "${bridge}" oifname != "${bridge}" drop`,
    "  }",
    "}",
    "",
  ].join("\n");
  await withNatLock(async () => {
    // Recorded first, so that a failure below is undone by the teardown like a success.
    if (!existsSync(NAT_UPLINK_RECORD)) {
      const previous = (await readFile(forwardingSetting(uplink), "utf8")).trim();
      await writeFile(NAT_UPLINK_RECORD, `${uplink} ${previous}\n`);
    }
    await run("nft", ["-f", "-"], ruleset);
    await writeFile(forwardingSetting(bridge), "1\n");
    await writeFile(forwardingSetting(uplink), "1\n");
  });
}

/** Removes the slot's NAT table, if any, and puts the uplink back once no network uses NAT. */
async function disableOutboundNat(slot: number): Promise<void> {
  // No record: no network has NAT (and this machine may not even have nft).
  if (!existsSync(NAT_UPLINK_RECORD)) return;
  await withNatLock(async () => {
    await runQuietly("nft", ["delete", "table", "ip", natTable(slot)]);
    if ((await natTables()).length > 0) return;
    const record = (await readFile(NAT_UPLINK_RECORD, "utf8").catch(() => "")).trim();
    const [uplink, previous] = record.split(" ");
    if (uplink && previous) await writeFile(forwardingSetting(uplink), `${previous}\n`).catch(() => {});
    await unlink(NAT_UPLINK_RECORD).catch(() => {});
  });
}

/**
 * The DNS servers this machine uses, as hosts can reach them through NAT: a local stub resolver
 * (systemd-resolved on 127.0.0.53) is replaced by the servers it forwards to.
 */
async function upstreamNameservers(): Promise<string[]> {
  const parse = (text: string) =>
    [...text.matchAll(/^nameserver\s+(\S+)/gm)].map((match) => match[1] ?? "").filter(Boolean);
  const isLoopback = (address: string) => address.startsWith("127.") || address === "::1";
  let servers = parse(await readFile("/etc/resolv.conf", "utf8").catch(() => ""));
  if (servers.length === 0 || servers.every(isLoopback)) {
    servers = parse(await readFile("/run/systemd/resolve/resolv.conf", "utf8").catch(() => ""));
  }
  servers = servers.filter((address) => !isLoopback(address) && !address.includes(":"));
  if (servers.length === 0) {
    throw new Error("this machine has no IPv4 DNS server that test hosts could reach through NAT");
  }
  return servers;
}
