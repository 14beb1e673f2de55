import type { TestHost } from "../hosts/index.js";

/** PIDs of a host's own processes matching a pattern: test hosts share the kernel's process table. */
export async function hostProcesses(host: TestHost, pattern: string): Promise<string[]> {
  return (
    await host.execOrThrow(
      `for pid in $(pgrep -f '${pattern}'); do [ "$(readlink /proc/$pid/ns/mnt)" = "$(readlink /proc/$$/ns/mnt)" ] && [ $pid != $$ ] && echo $pid; done; true`,
    )
  )
    .trim()
    .split("\n")
    .filter(Boolean)
    .sort();
}

/**
 * What of a node is left on a host: users, addresses (of the partitions' local IPv4 network,
 * given by its first octets, and partition IPv6 ones), taps, processes, files, firewall tables.
 * Empty when the host is clean.
 */
export async function nodeLeftovers(host: TestHost, ipv4Prefix = "10.201."): Promise<string> {
  const output = await host.execOrThrow(
    [
      "getent passwd | cut -d: -f1 | grep -E '^(slapuser[0-9]+|slapsoft)$'",
      "getent group | cut -d: -f1 | grep -E '^(slapuser[0-9]+|slapsoft)$'",
      `ip -o addr show dev eth0 | grep -E '${ipv4Prefix.replaceAll(".", "\\.")}|::[0-9a-f]+:[0-9a-f]+/'`,
      "ip -o link show | grep -o 'slaptap[0-9]*'",
      // Processes of this host only: several test hosts share the kernel's process table.
      "for pid in $(pgrep -f '[s]upervisord|[s]lap-node|[h]ttp.server|[s]lap-agent-service'); do [ \"$(readlink /proc/$pid/ns/mnt)\" = \"$(readlink /proc/$$/ns/mnt)\" ] && [ $pid != $$ ] && tr '\\0' ' ' < /proc/$pid/cmdline && echo; done",
      "ls -d /opt/slapos /opt/slapgrid /srv/slapgrid /etc/opt/slapos /run/slap-agent-service.pid 2>/dev/null",
      "nft list table inet slapos_accounting 2>/dev/null | head -1",
      "nft list table inet slapos_partitions 2>/dev/null | head -1",
      "true",
    ].join("; "),
  );
  return output.trim();
}
