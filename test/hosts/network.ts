import { mkdir, open, readdir, readFile, rm, unlink } from "node:fs/promises";
import { type HostOptions, TestHost } from "./host.js";
import { RUN_DIR, STATE_DIR } from "./paths.js";
import { isProcessAlive, killPids, run, runQuietly } from "./system.js";

const MAX_SLOTS = 200;

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

  static async create(): Promise<TestNetwork> {
    await prepareRunDir();
    const network = new TestNetwork(await claimSlot());
    try {
      await run("ip", ["link", "add", network.bridge, "type", "bridge"]);
      await run("ip", ["addr", "add", `${network.gatewayIpv4}/24`, "dev", network.bridge]);
      await run("ip", ["-6", "addr", "add", `${network.gatewayIpv6}/64`, "dev", network.bridge, "nodad"]);
      await run("ip", ["link", "set", network.bridge, "up"]);
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
  await rm(`${STATE_DIR}/${slot}`, { recursive: true, force: true });
  if (!options.keepLock) await unlink(`${RUN_DIR}/net-${slot}.lock`).catch(() => {});
}
