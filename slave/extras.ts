import { chmod, chown, mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import type { NodeConfig } from "./config.js";
import type { AgentContext } from "./context.js";
import { runTool } from "./format/command.js";
import { type HostNetwork, readHostNetwork } from "./format/host-network.js";
import type { DesiredPartition } from "./instance/types.js";
import type { LocalPartition } from "./partitions.js";

// A partition's extras, set on the master (the Pulumi `Partition` resource): a routable IPv4 the
// node adds to its interface for that partition alone, and a block device given to the
// partition's user. The agent applies them before deploying instances and undoes those that
// disappear. What it applied is recorded on disk, because a restarted agent (or an uninstall)
// must undo what an earlier run did, and the master no longer says what that was.

export type PartitionExtras = DesiredPartition["extras"];

/** What the agent applied for one partition. */
interface AppliedExtras {
  /** The address, and the interface it was added to (the configuration may change later). */
  routableIpv4?: { address: string; interface: string };
  blockDevice?: string;
}

type AppliedState = Record<string, AppliedExtras>;

/** `<instance_root>/var/partition-extras.json`; slave-bootstrap's uninstall reads it too. */
export function extrasStatePath(config: NodeConfig): string {
  return join(config.instanceRoot, "var", "partition-extras.json");
}

const DEVICE_MODE = 0o600;
/** How Debian's udev leaves a disk: root, group disk, 0660. */
const RELEASED_DEVICE_MODE = 0o660;

async function loadApplied(path: string): Promise<AppliedState> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as unknown;
    return typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)
      ? (parsed as AppliedState)
      : {};
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new Error(`${path} is not valid JSON (${(error as Error).message}): fix or remove it`);
  }
}

async function saveApplied(path: string, state: AppliedState): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true, mode: 0o755 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, path);
}

/** The gid of group `disk`, which owns disks on Debian; root's group where there is none. */
async function diskGroup(): Promise<number> {
  const groups = await readFile("/etc/group", "utf8").catch(() => "");
  const line = groups.split("\n").find((entry) => entry.startsWith("disk:"));
  const gid = Number(line?.split(":")[2]);
  return Number.isInteger(gid) ? gid : 0;
}

/** Gives a block device to the partition's user (mode 0600), or says why it cannot. */
async function claimDevice(path: string, partition: LocalPartition): Promise<void> {
  let device: Awaited<ReturnType<typeof stat>>;
  try {
    device = await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    throw new Error(
      `block device ${path} of ${partition.reference} does not exist on this node: attach the disk, or change the partition's blockDevice on the master`,
    );
  }
  if (!device.isBlockDevice()) {
    throw new Error(
      `${path}, the block device of ${partition.reference}, is not a block device: name a disk (e.g. /dev/vdb) in the partition's blockDevice`,
    );
  }
  const { uid, gid } = partition.user;
  if (device.uid !== uid || device.gid !== gid) await chown(path, uid, gid);
  if ((device.mode & 0o7777) !== DEVICE_MODE) await chmod(path, DEVICE_MODE);
}

/** Gives a device back to root:disk 0660, if it is still there. */
async function releaseDevice(path: string): Promise<void> {
  const device = await stat(path).catch(() => null);
  if (!device?.isBlockDevice()) return;
  await chown(path, 0, await diskGroup());
  await chmod(path, RELEASED_DEVICE_MODE);
}

/** The host's addresses, read only when some routable address is at stake, and changed through `ip`. */
class Addresses {
  private network: Promise<HostNetwork> | null = null;

  async has(address: string, interfaceName: string): Promise<boolean> {
    this.network ??= readHostNetwork();
    return (await this.network).addresses.some(
      (held) => held.address === address && held.interfaceName === interfaceName && held.prefixLength === 32,
    );
  }

  async run(...args: string[]): Promise<void> {
    this.network = null;
    await runTool("ip", ["address", ...args]);
  }
}

/**
 * Applies the extras of every partition this node has, as the desired state gives them, and
 * undoes those applied before that are no longer wanted. Returns what failed, by partition
 * reference: the instance of such a partition must not be deployed (it fails with that error).
 */
export async function applyPartitionExtras(
  context: AgentContext,
  desired: DesiredPartition[],
  local: ReadonlyMap<string, LocalPartition>,
): Promise<Map<string, Error>> {
  const { config, logger } = context;
  const path = extrasStatePath(config);
  const applied = await loadApplied(path);
  const wanted = new Map(desired.map((partition) => [partition.reference, partition.extras ?? {}]));
  const addresses = new Addresses();
  const problems = new Map<string, Error>();
  let changed = false;

  // Undo first: an address moving from one partition to another is removed, then added.
  for (const [reference, done] of Object.entries(applied)) {
    const want = wanted.get(reference) ?? {};
    const log = logger.child({ partition: reference });
    try {
      if (done.routableIpv4 && !sameAddress(done.routableIpv4, want, config)) {
        const { address, interface: interfaceName } = done.routableIpv4;
        if (await addresses.has(address, interfaceName)) {
          await addresses.run("del", `${address}/32`, "dev", interfaceName);
        }
        log.info({ address, interface: interfaceName }, "routable IPv4 removed");
        delete done.routableIpv4;
        changed = true;
      }
      if (done.blockDevice && done.blockDevice !== want.blockDevice) {
        await releaseDevice(done.blockDevice);
        log.info({ device: done.blockDevice }, "block device given back to root:disk");
        delete done.blockDevice;
        changed = true;
      }
    } catch (error) {
      problems.set(reference, error as Error);
      log.error({ err: error }, "could not undo the partition's former extras");
    }
    if (!done.routableIpv4 && !done.blockDevice) delete applied[reference];
  }

  for (const [reference, want] of wanted) {
    const partition = local.get(reference);
    if (!partition || (!want.routableIpv4 && !want.blockDevice) || problems.has(reference)) continue;
    const done = applied[reference] ?? {};
    try {
      changed = (await applyAddress(config, want, done, addresses, logger, reference)) || changed;
      if (want.blockDevice) {
        await claimDevice(want.blockDevice, partition);
        if (done.blockDevice !== want.blockDevice) {
          logger.info(
            { partition: reference, device: want.blockDevice },
            "block device given to the partition",
          );
          done.blockDevice = want.blockDevice;
          changed = true;
        }
      }
    } catch (error) {
      problems.set(reference, error as Error);
      logger.error({ partition: reference, err: error }, "could not apply the partition's extras");
    }
    if (done.routableIpv4 || done.blockDevice) applied[reference] = done;
  }

  if (changed) await saveApplied(path, applied);
  return problems;
}

function sameAddress(
  done: { address: string; interface: string },
  want: PartitionExtras,
  config: NodeConfig,
) {
  return (
    config.format.alterNetwork &&
    done.address === want.routableIpv4 &&
    done.interface === config.format.interfaceName
  );
}

/** Adds the routable IPv4 as /32 when it is missing (`ip addr replace`: harmless if it is there). */
async function applyAddress(
  config: NodeConfig,
  want: PartitionExtras,
  done: AppliedExtras,
  addresses: Addresses,
  logger: Logger,
  reference: string,
): Promise<boolean> {
  if (!want.routableIpv4) return false;
  if (!config.format.alterNetwork) {
    logger.debug(
      { partition: reference, address: want.routableIpv4 },
      "alter_network is false: the routable IPv4 is left to the host's own network configuration",
    );
    return false;
  }
  const interfaceName = config.format.interfaceName;
  // After a reboot the kernel forgot the address while the record remains: check the host itself.
  if (await addresses.has(want.routableIpv4, interfaceName)) {
    if (done.routableIpv4) return false;
  } else {
    await addresses.run("replace", `${want.routableIpv4}/32`, "dev", interfaceName);
    logger.info(
      { partition: reference, address: want.routableIpv4, interface: interfaceName },
      "routable IPv4 added",
    );
  }
  done.routableIpv4 = { address: want.routableIpv4, interface: interfaceName };
  return true;
}
