/** IPv4 addresses as unsigned 32-bit numbers, so that networks are plain arithmetic. */

export interface Ipv4Network {
  /** The network address (host bits cleared). */
  base: number;
  prefixLength: number;
  /** How many addresses the network spans, network and broadcast addresses included. */
  size: number;
}

export function parseIpv4(text: string): number {
  const parts = text.split(".");
  const octets = parts.map((part) => (/^\d{1,3}$/.test(part) ? Number(part) : Number.NaN));
  if (octets.length !== 4 || octets.some((octet) => !(octet >= 0 && octet <= 255))) {
    throw new Error(`'${text}' is not an IPv4 address`);
  }
  return octets.reduce((value, octet) => value * 256 + octet, 0);
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Parses `a.b.c.d/len`; host bits are cleared, so `10.0.0.5/16` means 10.0.0.0/16. */
export function parseIpv4Network(cidr: string): Ipv4Network {
  const [address, length, ...rest] = cidr.split("/");
  const prefixLength = Number(length);
  if (address === undefined || rest.length > 0 || !/^\d{1,2}$/.test(length ?? "") || prefixLength > 32) {
    throw new Error(`'${cidr}' is not an IPv4 network in CIDR notation (like 10.0.0.0/16)`);
  }
  const size = 2 ** (32 - prefixLength);
  const base = Math.floor(parseIpv4(address) / size) * size;
  return { base, prefixLength, size };
}

/** `255.255.255.0` -> 24. */
export function ipv4PrefixLength(netmask: string): number {
  const bits = parseIpv4(netmask).toString(2).padStart(32, "0");
  if (!/^1*0*$/.test(bits)) throw new Error(`'${netmask}' is not an IPv4 netmask`);
  return bits.indexOf("0") < 0 ? 32 : bits.indexOf("0");
}
