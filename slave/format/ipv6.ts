/** IPv6 addresses as 128-bit bigints, so that prefixes and host parts are plain arithmetic. */

const GROUPS = 8;
const GROUP_BITS = 16n;

function parseGroups(text: string): number[] {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (const [position, part] of parts.entries()) {
    // An IPv4-mapped tail (::ffff:192.0.2.1) counts as two groups.
    if (position === parts.length - 1 && part.includes(".")) {
      const octets = part.split(".").map((octet) => (/^\d{1,3}$/.test(octet) ? Number(octet) : 256));
      if (octets.length !== 4 || octets.some((octet) => octet > 255)) return [Number.NaN];
      const [a = 0, b = 0, c = 0, d = 0] = octets;
      groups.push(a * 256 + b, c * 256 + d);
    } else {
      groups.push(/^[0-9a-f]{1,4}$/i.test(part) ? Number.parseInt(part, 16) : Number.NaN);
    }
  }
  return groups;
}

export function parseIpv6(text: string): bigint {
  const halves = text.split("::");
  const head = parseGroups(halves[0] ?? "");
  const tail = parseGroups(halves[1] ?? "");
  const missing = GROUPS - head.length - tail.length;
  const valid =
    halves.length <= 2 &&
    [...head, ...tail].every((group) => !Number.isNaN(group)) &&
    (halves.length === 2 ? missing >= 1 : missing === 0);
  if (!valid) throw new Error(`'${text}' is not an IPv6 address`);
  return [...head, ...Array<number>(missing).fill(0), ...tail].reduce(
    (value, group) => (value << GROUP_BITS) | BigInt(group),
    0n,
  );
}

/** The canonical text form (RFC 5952): lower case, no leading zeros, the longest zero run as `::`. */
export function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: GROUPS }, (_, index) =>
    Number((value >> (GROUP_BITS * BigInt(GROUPS - 1 - index))) & 0xffffn),
  );
  let bestStart = -1;
  let bestLength = 1; // a single zero group is never shortened
  for (let start = 0; start < GROUPS; start++) {
    let length = 0;
    while (start + length < GROUPS && groups[start + length] === 0) length++;
    if (length > bestLength) [bestStart, bestLength] = [start, length];
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLength).join(":")}`;
}

/** `64` -> `ffff:ffff:ffff:ffff::`, the netmask form SlapOS records. */
export function ipv6Netmask(prefixLength: number): string {
  const hostBits = BigInt(128 - prefixLength);
  return formatIpv6(((1n << 128n) - 1n) ^ ((1n << hostBits) - 1n));
}

/** The address with its host part cleared. */
export function ipv6NetworkOf(address: bigint, prefixLength: number): bigint {
  const hostBits = BigInt(128 - prefixLength);
  return (address >> hostBits) << hostBits;
}

/** `ffff:ffff:ffff:ffff::` -> 64. */
export function ipv6PrefixLength(netmask: string): number {
  const bits = parseIpv6(netmask).toString(2).padStart(128, "0");
  if (!/^1*0*$/.test(bits)) throw new Error(`'${netmask}' is not an IPv6 netmask`);
  return bits.indexOf("0") < 0 ? 128 : bits.indexOf("0");
}
