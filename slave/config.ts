import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "ini";
import type { PartitionLimits } from "./isolation/limits.js";

/**
 * The node's configuration: an INI file with SlapOS's section and key names wherever one
 * exists (`[slapos]`, `[slapformat]`), so that a slapos.cfg mostly reads as it is.
 */
export interface NodeConfig {
  /** The file it was read from, for messages. */
  path: string;
  computerId: string;
  masterUrl: string;
  /** The computer's certificate and key (PEM files) issued at registration; absent against an `--insecure-http` master. */
  certFile?: string;
  keyFile?: string;
  /**
   * `certificate_renewal_days` (ours): the agent renews the computer's certificate once it
   * expires within this many days (default 30); 0 never renews.
   */
  certificateRenewalDays: number;
  /** The master's CA certificate (PEM file), to check the master's server certificate. */
  masterCaFile?: string;
  /** `software_root`: releases install into `<softwareRoot>/<md5(url)>`. */
  softwareRoot: string;
  /** `instance_root`: partitions are `<instanceRoot>/slappartN`; supervisord lives in `<instanceRoot>/etc`. */
  instanceRoot: string;
  /** Where partition certificates are written (`<reference>.crt`, `<reference>.key`). */
  certificateRepositoryPath: string;
  /** The node's Python environment: `bin/buildout`, `bin/supervisord`, `bin/python`. */
  pythonEnvironment: string;
  /** Seconds a promise may run before it counts as failed (`promise_timeout`). */
  promiseTimeoutSeconds: number;
  /** Seconds an instance buildout may run before it is killed (`partition_timeout`); 0: no limit. */
  partitionTimeoutSeconds: number;
  /** Seconds a software buildout may run before it is killed; 0: no limit. */
  softwareTimeoutSeconds: number;
  /** Seconds between two full passes of `slap node run` when nothing changes. */
  fullPassIntervalSeconds: number;
  /** Seconds between two usage reports of `slap node run`. */
  reportIntervalSeconds: number;
  /** The last desired state received, used when the master is unreachable. */
  desiredStateCache: string;
  /**
   * `restore_from` (ours): a URL under which the instances of a rebuilt node find their backups,
   * given to every instance as `[slap-instance] restore-from`; empty when there is nothing to restore.
   */
  restoreFrom: string;
  /**
   * `cgroup_name` (ours): each partition's cgroup is
   * `<controller mount>/<cgroupName>.<computerId>/<reference>` (default `slapos`).
   */
  cgroupName: string;
  /**
   * What one partition may use, enforced by its cgroup (slave/isolation): `partition_max_processes`
   * (default 1024), `partition_max_memory` (bytes, with an optional K, M or G suffix; default 0) and
   * `partition_cpu_weight` (1..10000, default 100: an equal share). 0 reads as null: no limit.
   */
  partitionLimits: PartitionLimits;
  format: FormatConfig;
}

export interface FormatConfig {
  partitionAmount: number;
  /** The interface that carries the partitions' IPv6 addresses (and IPv4 ones). */
  interfaceName: string;
  /** `ipv4_local_network`: partitions get consecutive addresses of this network (CIDR). */
  ipv4LocalNetwork: string;
  createTap: boolean;
  /** false: no users are created, everything runs as the agent's own user (containers, tests). */
  alterUser: boolean;
  /**
   * `allow_root_instances`: with alter_user = false, an agent running as root would run every
   * release's code (builds, instances, promises) as root; it refuses unless this says so (a
   * container whose root is not the host's).
   */
  allowRootInstances: boolean;
  /** false: no address, tap or firewall change; addresses must already exist (or be loopback). */
  alterNetwork: boolean;
  partitionBaseName: string;
  userBaseName: string;
  tapBaseName: string;
  softwareUser: string;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

type Section = Record<string, unknown>;

function text(section: Section, key: string): string | undefined {
  const value = section[key];
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") return String(value);
  return value.trim() || undefined;
}

function cgroupName(slapos: Section, path: string): string {
  const name = text(slapos, "cgroup_name") ?? "slapos";
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name)) {
    throw new ConfigError(
      `${path}: [slapos] cgroup_name = ${name} is not a directory name: write letters, digits, '_', '.' and '-' only (default slapos)`,
    );
  }
  return name;
}

const BYTE_UNITS = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as const;

function partitionLimits(slapos: Section, path: string): PartitionLimits {
  const maxProcesses = text(slapos, "partition_max_processes") ?? "1024";
  if (!/^\d+$/.test(maxProcesses)) {
    throw new ConfigError(
      `${path}: [slapos] partition_max_processes = ${maxProcesses} is not a whole number: write how many processes a partition may run at once (default 1024), or 0 for no limit`,
    );
  }
  const maxMemory = text(slapos, "partition_max_memory") ?? "0";
  const memory = /^(\d+)([KMG]?)$/i.exec(maxMemory);
  if (memory === null) {
    throw new ConfigError(
      `${path}: [slapos] partition_max_memory = ${maxMemory} is not a size: write a whole number of bytes with an optional K, M or G suffix (e.g. 512M), or 0 for no limit`,
    );
  }
  const [, amount = "0", unit = ""] = memory;
  const cpuWeight = text(slapos, "partition_cpu_weight") ?? "100";
  if (!/^\d+$/.test(cpuWeight) || Number(cpuWeight) < 1 || Number(cpuWeight) > 10_000) {
    throw new ConfigError(
      `${path}: [slapos] partition_cpu_weight = ${cpuWeight} is not a whole number from 1 to 10000: write a partition's share of CPU time when the CPUs are busy, 100 being the default share`,
    );
  }
  return {
    maxProcesses: Number(maxProcesses) || null,
    maxMemoryBytes: Number(amount) * BYTE_UNITS[unit.toUpperCase() as keyof typeof BYTE_UNITS] || null,
    cpuWeight: Number(cpuWeight),
  };
}

/**
 * Parses a node configuration. `computer_id` may be missing only before registration, which
 * writes it (`registering`).
 */
export function parseNodeConfig(
  source: string,
  path: string,
  options: { registering?: boolean } = {},
): NodeConfig {
  const document = parse(source) as Record<string, Section>;
  const slapos = document.slapos ?? {};
  const slapformat = document.slapformat ?? {};
  const required = (section: Section, name: string, key: string): string => {
    const value = text(section, key);
    if (value === undefined) {
      throw new ConfigError(`${path}: [${name}] ${key} is required`);
    }
    return value;
  };
  const number = (section: Section, name: string, key: string, fallback: number, minimum = 0): number => {
    const value = text(section, key);
    if (value === undefined) return fallback;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < minimum) {
      throw new ConfigError(`${path}: [${name}] ${key} = ${value} is not a number >= ${minimum}`);
    }
    return parsed;
  };
  const flag = (section: Section, name: string, key: string, fallback: boolean): boolean => {
    const value = text(section, key)?.toLowerCase();
    if (value === undefined) return fallback;
    if (["true", "yes", "1", "on"].includes(value)) return true;
    if (["false", "no", "0", "off"].includes(value)) return false;
    throw new ConfigError(`${path}: [${name}] ${key} = ${value} is not true or false`);
  };
  const masterUrl = required(slapos, "slapos", "master_url");
  try {
    new URL(masterUrl);
  } catch {
    throw new ConfigError(`${path}: [slapos] master_url = ${masterUrl} is not a URL`);
  }
  const certFile = text(slapos, "cert_file");
  const keyFile = text(slapos, "key_file");
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new ConfigError(`${path}: [slapos] cert_file and key_file go together; set both or neither`);
  }
  const instanceRoot = text(slapos, "instance_root") ?? "/srv/slapgrid";
  return {
    path,
    computerId: options.registering
      ? (text(slapos, "computer_id") ?? "")
      : required(slapos, "slapos", "computer_id"),
    masterUrl,
    certFile,
    keyFile,
    certificateRenewalDays: number(slapos, "slapos", "certificate_renewal_days", 30),
    masterCaFile: text(slapos, "master_ca_file"),
    softwareRoot: text(slapos, "software_root") ?? "/opt/slapgrid",
    instanceRoot,
    certificateRepositoryPath:
      text(slapos, "certificate_repository_path") ?? join(instanceRoot, "var", "pki"),
    pythonEnvironment: text(slapos, "python_environment") ?? "/opt/slapos",
    promiseTimeoutSeconds: number(slapos, "slapos", "promise_timeout", 20, 1),
    partitionTimeoutSeconds: number(slapos, "slapos", "partition_timeout", 0),
    softwareTimeoutSeconds: number(slapos, "slapos", "software_timeout", 0),
    fullPassIntervalSeconds: number(slapos, "slapos", "full_pass_interval", 300, 1),
    reportIntervalSeconds: number(slapos, "slapos", "report_interval", 60, 1),
    desiredStateCache: text(slapos, "desired_state_cache") ?? join(instanceRoot, "var", "desired-state.json"),
    restoreFrom: text(slapos, "restore_from") ?? "",
    cgroupName: cgroupName(slapos, path),
    partitionLimits: partitionLimits(slapos, path),
    format: {
      partitionAmount: number(slapformat, "slapformat", "partition_amount", 10),
      interfaceName: text(slapformat, "interface_name") ?? "lo",
      ipv4LocalNetwork: text(slapformat, "ipv4_local_network") ?? "10.0.0.0/16",
      createTap: flag(slapformat, "slapformat", "create_tap", false),
      alterUser: flag(slapformat, "slapformat", "alter_user", true),
      allowRootInstances: flag(slapformat, "slapformat", "allow_root_instances", false),
      alterNetwork: flag(slapformat, "slapformat", "alter_network", true),
      partitionBaseName: text(slapformat, "partition_base_name") ?? "slappart",
      userBaseName: text(slapformat, "user_base_name") ?? "slapuser",
      tapBaseName: text(slapformat, "tap_base_name") ?? "slaptap",
      softwareUser: text(slapformat, "software_user") ?? "slapsoft",
    },
  };
}

export async function readNodeConfig(
  path: string,
  options: { registering?: boolean } = {},
): Promise<NodeConfig> {
  let source: string;
  try {
    source = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read the node configuration ${path}: ${(error as Error).message}`);
  }
  return parseNodeConfig(source, path, options);
}

/** Sets `[slapos] computer_id` in the file, keeping everything else (comments included) as it is. */
export async function writeComputerId(path: string, computerId: string): Promise<void> {
  const lines = (await readFile(path, "utf8")).split("\n");
  const section = lines.findIndex((line) => line.trim() === "[slapos]");
  if (section < 0) throw new ConfigError(`${path} has no [slapos] section`);
  let end = lines.findIndex((line, index) => index > section && /^\s*\[/.test(line));
  if (end < 0) end = lines.length;
  const existing = lines.findIndex(
    (line, index) => index > section && index < end && /^\s*computer_id\s*=/.test(line),
  );
  if (existing >= 0) lines[existing] = `computer_id = ${computerId}`;
  else lines.splice(section + 1, 0, `computer_id = ${computerId}`);
  await writeFile(path, lines.join("\n"));
}
