import { REMOTE } from "./layout.js";
import type { RemoteHost } from "./ssh.js";

/** What the bootstrapper learned about a host before changing anything. */
export interface HostFacts {
  os: string;
  architecture: string;
  /** `python3 -c 'print(sys.version_info[:2])'` as "3.11". */
  python: string | null;
  /** The host's own `node --version` ("v20.20.2"), when on PATH. */
  node: string | null;
  freeMegabytes: number;
  tap: boolean;
  ipv6: boolean;
  systemd: boolean;
  /** `[slapos] master_url` and `computer_id` of an installation already there. */
  installed: { masterUrl: string; computerId: string } | null;
}

export class PreflightError extends Error {
  constructor(host: string, problems: string[]) {
    super(`${host} cannot become a node:\n${problems.map((problem) => `- ${problem}`).join("\n")}`);
    this.name = "PreflightError";
  }
}

/** Space the Python environment, the agent and a first software release need. */
const MINIMUM_FREE_MB = 1024;

const PROBE = [
  "echo os=$(uname -s)",
  "echo arch=$(uname -m)",
  "echo python=$(python3 -c 'import sys, venv; print(\"%d.%d\" % sys.version_info[:2])' 2>/dev/null)",
  "echo node=$(node --version 2>/dev/null)",
  "echo free=$(df -Pm / | awk 'NR==2 {print $4}')",
  "echo tap=$(test -c /dev/net/tun && echo yes)",
  "echo ipv6=$(test -e /proc/net/if_inet6 && echo yes)",
  "echo systemd=$(test -d /run/systemd/system && echo yes)",
  `echo master=$(sed -n 's/^master_url *= *//p' ${REMOTE.config} 2>/dev/null)`,
  `echo computer=$(sed -n 's/^computer_id *= *//p' ${REMOTE.config} 2>/dev/null)`,
].join("; ");

export async function inspectHost(remote: RemoteHost): Promise<HostFacts> {
  const output = await remote.runOrThrow(PROBE, { sudo: true });
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(output)?.[1]?.trim() ?? "";
  const master = value("master");
  return {
    os: value("os"),
    architecture: value("arch"),
    python: value("python") || null,
    node: value("node") || null,
    freeMegabytes: Number(value("free")) || 0,
    tap: value("tap") === "yes",
    ipv6: value("ipv6") === "yes",
    systemd: value("systemd") === "yes",
    installed: master ? { masterUrl: master, computerId: value("computer") } : null,
  };
}

/**
 * Refuses, before any change, a host that cannot run a node: every problem at once, each with
 * what to do about it.
 */
export function checkHost(
  host: string,
  facts: HostFacts,
  expected: { masterUrl: string; computerId?: string; python: string; needsTap: boolean },
): void {
  const problems: string[] = [];
  if (facts.os !== "Linux") problems.push(`it runs ${facts.os || "an unknown system"}; nodes run Linux`);
  if (!["x86_64", "aarch64"].includes(facts.architecture)) {
    problems.push(`its architecture is ${facts.architecture}; supported: x86_64, aarch64`);
  }
  if (!facts.python)
    problems.push("python3 with its venv module is missing: install python3 and python3-venv");
  else if (facts.python !== expected.python) {
    problems.push(
      `its Python is ${facts.python}, but the node's wheels are built for Python ${expected.python}`,
    );
  }
  if (facts.freeMegabytes < MINIMUM_FREE_MB) {
    problems.push(`only ${facts.freeMegabytes} MB are free on /; a node needs ${MINIMUM_FREE_MB} MB`);
  }
  if (expected.needsTap && !facts.tap)
    problems.push("/dev/net/tun is missing: load the tun module, or format without taps");
  if (!facts.ipv6) problems.push("IPv6 is disabled: partitions need a global IPv6 address each");
  if (facts.installed && facts.installed.masterUrl !== expected.masterUrl) {
    problems.push(
      `it is already a node of another master (${facts.installed.masterUrl}); uninstall it first (slap bootstrap --uninstall)`,
    );
  } else if (
    facts.installed?.computerId &&
    expected.computerId &&
    facts.installed.computerId !== expected.computerId
  ) {
    problems.push(
      `it is already computer ${facts.installed.computerId}, not ${expected.computerId}; uninstall it first (slap bootstrap --uninstall)`,
    );
  }
  if (problems.length > 0) throw new PreflightError(host, problems);
}
