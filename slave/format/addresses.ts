import type { PartitionAddress } from "../partitions.js";
import type { HostNetwork } from "./host-network.js";
import { formatIpv4, type Ipv4Network, parseIpv4Network } from "./ipv4.js";
import { formatIpv6, ipv6Netmask, ipv6NetworkOf, parseIpv6 } from "./ipv6.js";

/**
 * The address scheme. Partitions take, in index order, the first addresses of a pool that neither
 * this host (on any interface) nor another partition already uses:
 * - IPv4: `ipv4_local_network` without its network and broadcast addresses, netmask
 *   255.255.255.255; on a clean host slappartN gets network + N + 1 (10.0.0.0/16: 10.0.0.1, ...).
 * - IPv6: a block of the prefix of the interface's own global IPv6 address, from host part 2 of the
 *   block, netmask the interface's prefix length. Nodes often share a prefix (a LAN's /64), so each
 *   takes the /112 named after its own address's host part: the node at 2001:db8::b gives its
 *   partitions 2001:db8::b:2, 2001:db8::b:3, ... and its neighbour at 2001:db8::c 2001:db8::c:2, ...
 *   A prefix too long for that (over /96) is used whole, from host part 2, as slapformat does.
 * Addresses a partition's `.slapos-resource` records are kept as they are, so a re-run, or a run
 * with more partitions, never renumbers. The plan is the same whether or not format may alter the
 * network: with alter_network = false it is recorded but not added.
 */
export interface PartitionAddresses {
  ipv4: PartitionAddress;
  ipv6: PartitionAddress;
}

export interface AddressPlanInput {
  partitionAmount: number;
  interfaceName: string;
  ipv4LocalNetwork: string;
  host: HostNetwork;
  /** Canonical addresses each partition's `.slapos-resource` records, by partition index. */
  recorded: ReadonlyMap<number, readonly PartitionAddress[]>;
  reference: (index: number) => string;
}

const IPV4_NETMASK = "255.255.255.255";
const FIRST_IPV4_HOST = 1n;
const FIRST_IPV6_HOST = 2n;
/** A node's IPv6 block: room for 65534 partitions. */
const BLOCK_BITS = 16n;
/** Host bits a prefix must leave beside the block for the node's own address to tell blocks apart. */
const NODE_BITS = 16n;

/** Hands out the free addresses of a range in order. */
class AddressPool {
  private next: bigint;

  constructor(
    private readonly name: string,
    first: bigint,
    private readonly last: bigint,
    private readonly toText: (value: bigint) => string,
    private readonly taken: Set<string>,
  ) {
    this.next = first;
  }

  take(reference: string): string {
    for (; this.next <= this.last; this.next++) {
      const text = this.toText(this.next);
      if (this.taken.has(text)) continue;
      this.taken.add(text);
      this.next++;
      return text;
    }
    throw new Error(
      `${this.name} has no free address left for ${reference}: this host already uses some of them; use a larger one`,
    );
  }
}

export function planAddresses(input: AddressPlanInput): PartitionAddresses[] {
  const recordedList = [...input.recorded.values()].flat();
  const taken = new Set([
    ...input.host.addresses.map((a) => a.address),
    ...recordedList.map((a) => a.address),
  ]);
  const ipv4 = ipv4Pool(input, taken);
  const { pool: ipv6, netmask: ipv6Mask } = ipv6Pool(
    input,
    new Set(recordedList.map((a) => a.address)),
    taken,
  );
  return Array.from({ length: input.partitionAmount }, (_, index) => {
    const recorded = input.recorded.get(index) ?? [];
    const reference = input.reference(index);
    return {
      ipv4: recorded.find((a) => !a.address.includes(":")) ?? {
        address: ipv4.take(reference),
        netmask: IPV4_NETMASK,
      },
      ipv6: recorded.find((a) => a.address.includes(":")) ?? {
        address: ipv6.take(reference),
        netmask: ipv6Mask,
      },
    };
  });
}

function ipv4Pool(input: AddressPlanInput, taken: Set<string>): AddressPool {
  let network: Ipv4Network;
  try {
    network = parseIpv4Network(input.ipv4LocalNetwork);
  } catch (error) {
    throw new Error(`[slapformat] ipv4_local_network: ${(error as Error).message}`);
  }
  const room = Math.max(network.size - 2, 0);
  if (room < input.partitionAmount) {
    const needed = 32 - Math.ceil(Math.log2(input.partitionAmount + 2));
    throw new Error(
      `[slapformat] ipv4_local_network = ${input.ipv4LocalNetwork} has room for ${room} partition addresses but partition_amount = ${input.partitionAmount}: use a larger network (a /${needed} or larger)`,
    );
  }
  const base = BigInt(network.base);
  return new AddressPool(
    `ipv4_local_network ${input.ipv4LocalNetwork}`,
    base + FIRST_IPV4_HOST,
    base + BigInt(network.size) - 2n,
    (value) => formatIpv4(Number(value)),
    taken,
  );
}

function ipv6Pool(
  input: AddressPlanInput,
  partitionAddresses: Set<string>,
  taken: Set<string>,
): { pool: AddressPool; netmask: string } {
  const { interfaceName, host } = input;
  if (!host.links.has(interfaceName)) {
    throw new Error(
      `[slapformat] interface_name = ${interfaceName}: this host has no such interface (it has ${[...host.links.keys()].join(", ")}); set it to the interface that carries this node's global IPv6 address`,
    );
  }
  const globals = host.addresses.filter(
    (a) => a.interfaceName === interfaceName && a.family === "inet6" && a.scope === "global" && !a.dadFailed,
  );
  if (globals.length === 0) {
    throw new Error(
      `interface ${interfaceName} has no global IPv6 address, and partitions take theirs from its prefix: give it one (e.g. 'ip -6 address add 2001:db8::1/64 dev ${interfaceName}') or set [slapformat] interface_name to an interface that has one`,
    );
  }
  // The host's own address, not one format added nor a privacy address (those change daily):
  // shortest prefix first, then lowest, as slapformat.
  const own = globals.filter((a) => !partitionAddresses.has(a.address) && !a.temporary);
  const chosen = (own.length > 0 ? own : globals)
    .map((a) => ({ value: parseIpv6(a.address), prefixLength: a.prefixLength }))
    .reduce((best, a) =>
      a.prefixLength < best.prefixLength || (a.prefixLength === best.prefixLength && a.value < best.value)
        ? a
        : best,
    );
  const hostBits = BigInt(128 - chosen.prefixLength);
  const network = ipv6NetworkOf(chosen.value, chosen.prefixLength);
  const blockBits = hostBits >= BLOCK_BITS + NODE_BITS ? BLOCK_BITS : hostBits;
  const block = network + (((chosen.value - network) << blockBits) & ((1n << hostBits) - 1n));
  const first = block + FIRST_IPV6_HOST;
  const last = block + (1n << blockBits) - 1n;
  const room = last - first + 1n;
  const name = `the IPv6 block ${formatIpv6(block)}/${128n - blockBits} of ${interfaceName}`;
  if (room < BigInt(input.partitionAmount)) {
    throw new Error(
      `${name} has room for ${room > 0n ? room : 0n} partition addresses but partition_amount = ${input.partitionAmount}: give ${interfaceName} an address with a shorter prefix (a /64)`,
    );
  }
  return {
    pool: new AddressPool(name, first, last, formatIpv6, taken),
    netmask: ipv6Netmask(chosen.prefixLength),
  };
}
