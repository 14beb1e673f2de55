import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { PartitionAddress } from "../partitions.js";
import type { PartitionAddresses } from "./addresses.js";
import type { ChangeLog } from "./changes.js";
import { runTool, ToolError } from "./command.js";
import { type HostNetwork, readHostNetwork } from "./host-network.js";
import { ipv4PrefixLength } from "./ipv4.js";
import { ipv6PrefixLength } from "./ipv6.js";
import type { Owner } from "./users.js";

export interface PartitionNetwork {
  reference: string;
  addresses: PartitionAddresses;
  tap: { name: string; owner: Owner } | null;
}

/** One line of the `ip -batch` input, and the change it makes (none for follow-up lines). */
interface IpCommand {
  line: string;
  partition: string;
  change?: string;
}

/** How long new IPv6 addresses may stay tentative (duplicate address detection) before format moves on. */
const DAD_TIMEOUT_MS = 5_000;
const DAD_POLL_MS = 100;

const withPrefix = ({ address, netmask }: PartitionAddress) =>
  `${address}/${address.includes(":") ? ipv6PrefixLength(netmask) : ipv4PrefixLength(netmask)}`;

function duplicateAddressError(address: string, partition: string, interfaceName: string): Error {
  return new Error(
    `${address} of ${partition} failed duplicate address detection on ${interfaceName}: another machine on that link uses it: free it there, then run format again`,
  );
}

/**
 * Adds the partitions' addresses to the interface and creates their taps, for whatever is
 * missing, with one `ip -batch` process; then waits until the kernel may use the new IPv6
 * addresses (duplicate address detection), so that instances can bind them at once.
 */
export async function applyNetwork(
  interfaceName: string,
  host: HostNetwork,
  partitions: PartitionNetwork[],
  changes: ChangeLog,
  logger: Logger,
): Promise<void> {
  const commands: IpCommand[] = [];
  const newIpv6 = new Map<string, string>();
  for (const partition of partitions) {
    for (const address of [partition.addresses.ipv4, partition.addresses.ipv6]) {
      const added = addressCommands(interfaceName, host, partition.reference, address, logger);
      commands.push(...added);
      if (added.length > 0 && address.address.includes(":"))
        newIpv6.set(address.address, partition.reference);
    }
    if (partition.tap) commands.push(...tapCommands(host, partition.reference, partition.tap, logger));
  }
  if (commands.length > 0) await runIpBatch(commands, changes);
  if (newIpv6.size > 0) await waitForDuplicateAddressDetection(interfaceName, newIpv6, logger);
}

function addressCommands(
  interfaceName: string,
  host: HostNetwork,
  partition: string,
  address: PartitionAddress,
  logger: Logger,
): IpCommand[] {
  const held = host.addresses.filter((a) => a.address === address.address);
  const onInterface = held.find((a) => a.interfaceName === interfaceName);
  const target = withPrefix(address);
  const add = { line: `address add ${target} dev ${interfaceName}`, partition };
  if (onInterface?.dadFailed) {
    // Deleted and added again, which runs duplicate address detection anew.
    return [
      {
        line: `address delete ${onInterface.address}/${onInterface.prefixLength} dev ${interfaceName}`,
        partition,
      },
      {
        ...add,
        change: `re-added ${target} to ${interfaceName} (it had failed duplicate address detection)`,
      },
    ];
  }
  if (onInterface) return [];
  const [elsewhere] = held;
  if (elsewhere) {
    logger.warn(
      { partition },
      `${address.address} is on ${elsewhere.interfaceName}, not ${interfaceName}: left where it is`,
    );
    return [];
  }
  return [{ ...add, change: `added ${target} to ${interfaceName}` }];
}

function tapCommands(
  host: HostNetwork,
  partition: string,
  tap: { name: string; owner: Owner },
  logger: Logger,
): IpCommand[] {
  const { name, owner } = tap;
  const link = host.links.get(name);
  const up = { line: `link set dev ${name} up`, partition };
  if (!link) {
    return [
      {
        line: `tuntap add dev ${name} mode tap user ${owner.uid}`,
        partition,
        change: `created tap ${name} for ${owner.name}`,
      },
      up,
    ];
  }
  if (link.kind !== "tun" || link.tunType !== "tap") {
    throw new Error(
      `${name} exists but is not a tap device: delete it ('ip link delete ${name}') or set [slapformat] tap_base_name to another name`,
    );
  }
  // An existing tap is left alone, as slapformat does: it may be in use.
  if (link.owner !== owner.name && link.owner !== String(owner.uid)) {
    logger.warn(
      { partition },
      `tap ${name} belongs to ${link.owner ?? "no user"}, not ${owner.name}: left as it is (delete it to have format recreate it)`,
    );
  }
  return link.up ? [] : [{ ...up, change: `set ${name} up` }];
}

async function runIpBatch(commands: IpCommand[], changes: ChangeLog): Promise<void> {
  const record = (done: IpCommand[]) => {
    for (const { partition, change } of done) if (change) changes.record(partition, change);
  };
  try {
    await runTool("ip", ["-batch", "-"], `${commands.map((command) => command.line).join("\n")}\n`);
  } catch (error) {
    if (!(error instanceof ToolError)) throw error;
    // ip stops at the first failing line and names it: "Command failed -:LINE".
    const failedLine = Number(/Command failed -:(\d+)/.exec(error.output)?.[1] ?? 0);
    const failed = commands[failedLine - 1];
    if (!failed) throw error;
    record(commands.slice(0, failedLine - 1));
    throw new Error(`${failed.partition}: 'ip ${failed.line}' failed: ${error.output.split("\n")[0]}`);
  }
  record(commands);
}

async function waitForDuplicateAddressDetection(
  interfaceName: string,
  partitionOf: Map<string, string>,
  logger: Logger,
): Promise<void> {
  const deadline = Date.now() + DAD_TIMEOUT_MS;
  for (;;) {
    const ours = (await readHostNetwork()).addresses.filter(
      (a) => a.interfaceName === interfaceName && partitionOf.has(a.address),
    );
    const failed = ours.find((a) => a.dadFailed);
    if (failed)
      throw duplicateAddressError(failed.address, partitionOf.get(failed.address) ?? "", interfaceName);
    const tentative = ours.filter((a) => a.tentative).map((a) => a.address);
    if (tentative.length === 0) return;
    if (Date.now() > deadline) {
      logger.warn(
        { addresses: tentative },
        `${tentative.length} new addresses are still tentative on ${interfaceName} after ${DAD_TIMEOUT_MS / 1000} s (is it up, with a carrier?): instances cannot bind them until duplicate address detection ends`,
      );
      return;
    }
    await sleep(DAD_POLL_MS);
  }
}
