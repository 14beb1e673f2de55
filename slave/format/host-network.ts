import { runTool } from "./command.js";
import { formatIpv4, parseIpv4 } from "./ipv4.js";
import { formatIpv6, parseIpv6 } from "./ipv6.js";

/** One address as the kernel holds it, in canonical text form. */
export interface HostAddress {
  interfaceName: string;
  family: "inet" | "inet6";
  address: string;
  prefixLength: number;
  scope: string;
  /** IPv6 duplicate address detection still running: the address cannot be bound yet. */
  tentative: boolean;
  /** Another machine on the link answered for this IPv6 address: the kernel will not use it. */
  dadFailed: boolean;
  /** An IPv6 privacy address, replaced every day or so. */
  temporary: boolean;
}

export interface HostLink {
  name: string;
  /** Administratively up (`ip link set up`), whatever the carrier. */
  up: boolean;
  /** `tun` for tun and tap devices, as `ip -d` reports `linkinfo.info_kind`. */
  kind: string | null;
  /** For tun/tap devices: `tap` or `tun`. */
  tunType: string | null;
  /** For tun/tap devices: the owner as ip prints it (a user name, or a uid when it has none). */
  owner: string | null;
}

/** The network state of this host, read in one `ip` call. */
export interface HostNetwork {
  links: Map<string, HostLink>;
  addresses: HostAddress[];
}

interface IpAddressJson {
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
  tentative?: boolean;
  dadfailed?: boolean;
  temporary?: boolean;
}

interface IpLinkJson {
  ifname: string;
  flags: string[];
  linkinfo?: { info_kind?: string; info_data?: { type?: string; user?: string | number } };
  addr_info?: IpAddressJson[];
}

/** Normalises an address to the form used for comparison: canonical IPv6, dotted IPv4. */
export function canonicalAddress(address: string): string {
  return address.includes(":") ? formatIpv6(parseIpv6(address)) : formatIpv4(parseIpv4(address));
}

export async function readHostNetwork(): Promise<HostNetwork> {
  // -d adds linkinfo (tap type and owner) to the addresses: links and addresses in one process.
  const links = JSON.parse(await runTool("ip", ["-d", "-j", "address", "show"])) as IpLinkJson[];
  const network: HostNetwork = { links: new Map(), addresses: [] };
  for (const link of links) {
    const info = link.linkinfo?.info_data;
    network.links.set(link.ifname, {
      name: link.ifname,
      up: link.flags.includes("UP"),
      kind: link.linkinfo?.info_kind ?? null,
      tunType: info?.type ?? null,
      owner: info?.user === undefined ? null : String(info.user),
    });
    for (const address of link.addr_info ?? []) {
      if (address.family !== "inet" && address.family !== "inet6") continue;
      network.addresses.push({
        interfaceName: link.ifname,
        family: address.family,
        address: canonicalAddress(address.local),
        prefixLength: address.prefixlen,
        scope: address.scope,
        tentative: address.tentative === true,
        dadFailed: address.dadfailed === true,
        temporary: address.temporary === true,
      });
    }
  }
  return network;
}
