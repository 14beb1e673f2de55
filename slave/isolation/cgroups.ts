import { access, mkdir, readdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { LIMIT_CONTROLLERS, type LimitController, limitWrites, type PartitionLimits } from "./limits.js";
import { parseCgroupMounts } from "./mountinfo.js";
import { killProcess, ownMountNamespace, processesOf } from "./proc-sweep.js";

export type { PartitionLimits } from "./limits.js";

/** A partition as confinement needs it: its cgroup is named after the reference, its processes run as uid/gid. */
export interface ConfinedPartition {
  reference: string;
  uid: number;
  gid: number;
}

/** A partition's limits in force and what its cgroup holds now (fields absent without the controller). */
export interface PartitionUsage {
  memoryBytes?: number;
  processes?: number;
  limits: PartitionLimits;
}

type Controller = LimitController | "freezer";

/** One mounted hierarchy and the controllers of ours it carries: one for v2, one per v1 mount. */
interface Hierarchy {
  mount: string;
  controllers: Controller[];
}

const KILL_TIMEOUT_MS = 10_000;
const POLL_MS = 20;
const FREEZE_POLLS = 50;

/**
 * Writes its own pid into each cgroup.procs named before `--`, then execs what follows. Joining
 * before exec is what makes it race-free: every child the command will ever start is born inside.
 * The command comes as "$@", never into the script's text.
 */
const JOIN_SCRIPT =
  'while [ "$1" != -- ]; do echo $$ >"$1" || { echo "cannot join the cgroup $1: prepare the partition first, as root" >&2; exit 126; }; shift; done; shift; exec "$@"';

const COMPONENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function checkComponent(what: string, value: string): void {
  if (!COMPONENT.test(value)) {
    throw new Error(
      `${what} '${value}' cannot name a cgroup directory: use letters, digits, '_', '.' and '-' only`,
    );
  }
}

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

const WRITE_HINTS: Record<string, string> = {
  EACCES: "the agent must run as root",
  EPERM: "the agent must run as root",
  EBUSY:
    "the kernel refused the change (memory in use above the new limit, or processes in a parent cgroup): raise the limit in the node configuration, or stop the partition first",
  EINVAL: "the kernel refused this value",
};

async function writeControl(file: string, value: string, optional = false): Promise<void> {
  try {
    await writeFile(file, value);
  } catch (error) {
    const code = errnoOf(error);
    if (optional && code === "ENOENT") return;
    const hint = WRITE_HINTS[code ?? ""] ?? "check the cgroup mounts in /proc/self/mountinfo";
    throw new Error(`cannot write '${value}' to ${file} (${code}): ${hint}`);
  }
}

/** The pids in a cgroup.procs; none when the cgroup does not exist. */
async function cgroupProcesses(file: string): Promise<number[]> {
  const text = await readFile(file, "utf8").catch((error: unknown) => {
    if (errnoOf(error) === "ENOENT") return "";
    throw error;
  });
  return text.split("\n").filter(Boolean).map(Number);
}

/** A number from a cgroup file; undefined when the file does not exist. */
async function readCounter(file: string): Promise<number | undefined> {
  try {
    return Number((await readFile(file, "utf8")).trim());
  } catch (error) {
    if (errnoOf(error) === "ENOENT") return undefined;
    throw error;
  }
}

async function exists(path: string | undefined): Promise<boolean> {
  if (path === undefined) return false;
  return access(path).then(
    () => true,
    () => false,
  );
}

async function removeDirectory(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (error) {
    const code = errnoOf(error);
    if (code === "ENOENT") return;
    if (code === "EBUSY") {
      throw new Error(
        `cannot remove the cgroup ${path}: processes still run in it; kill them first (killAll)`,
      );
    }
    throw error;
  }
}

/**
 * Each partition in its own cgroup, `<mount>/<name>/<reference>` in every hierarchy we use, so
 * that it cannot exhaust the node (process, memory and CPU limits) and so that all of its
 * processes can be found and killed, however they detached.
 *
 * Three layouts, found from /proc/self/mountinfo: the unified hierarchy (v2) when it carries at
 * least one of the pids, memory and cpu controllers; else the v1 hierarchies of cpu, memory, pids
 * and freezer that are mounted; else none, where RLIMIT_NPROC of the partition's uid bounds its
 * processes and they are found by uid alone. `name` sets two agents on one kernel apart.
 */
export class PartitionCgroups {
  private constructor(
    private readonly name: string,
    /** 2, 1, or null without cgroups. */
    readonly version: 1 | 2 | null,
    private readonly hierarchies: Hierarchy[],
    /** The limits in force: configured ones this node has no means to enforce are null. */
    readonly limits: PartitionLimits,
    private readonly logger: Logger,
  ) {}

  static async detect(options: {
    name: string;
    limits: PartitionLimits;
    logger: Logger;
  }): Promise<PartitionCgroups> {
    const { name, limits, logger } = options;
    checkComponent("the cgroup name", name);
    const mounts = parseCgroupMounts(await readFile("/proc/self/mountinfo", "utf8"));
    let version: 1 | 2 | null = null;
    let hierarchies: Hierarchy[] = [];
    for (const mount of mounts.unified) {
      const available = (await readFile(join(mount, "cgroup.controllers"), "utf8").catch(() => "")).split(
        /\s+/,
      );
      const controllers = LIMIT_CONTROLLERS.filter((controller) => available.includes(controller));
      if (controllers.length > 0) {
        version = 2;
        hierarchies = [{ mount, controllers }];
        break;
      }
    }
    if (version === null) {
      const byMount = new Map<string, Controller[]>();
      for (const controller of [...LIMIT_CONTROLLERS, "freezer"] as const) {
        const mount = mounts.v1.get(controller);
        if (mount !== undefined) byMount.set(mount, [...(byMount.get(mount) ?? []), controller]);
      }
      hierarchies = [...byMount].map(([mount, controllers]) => ({ mount, controllers }));
      if (hierarchies.length > 0) version = 1;
    }
    const has = (controller: Controller) =>
      hierarchies.some(({ controllers }) => controllers.includes(controller));
    const enforced: PartitionLimits = {
      maxProcesses: limits.maxProcesses,
      maxMemoryBytes: has("memory") ? limits.maxMemoryBytes : null,
      cpuWeight: has("cpu") ? limits.cpuWeight : null,
    };
    logger.info(
      { cgroups: version === null ? "none" : `v${version}`, name, hierarchies, limits: enforced },
      "partition confinement",
    );
    if (version === null) {
      logger.warn(
        "no cgroup controller is mounted: partition processes are bounded by RLIMIT_NPROC and found by uid only, memory and CPU are not limited",
      );
    } else if (version === 1 && !has("freezer")) {
      logger.warn("the v1 freezer controller is not mounted: killing a partition races with its forks");
    }
    if (!has("pids") && limits.maxProcesses !== null) {
      logger.info("no pids controller: RLIMIT_NPROC of each partition's user bounds its processes");
    }
    if (!has("memory") && limits.maxMemoryBytes !== null) {
      logger.warn("no memory controller: partition_max_memory is not enforced");
    }
    if (!has("cpu") && limits.cpuWeight !== null) {
      logger.warn("no cpu controller: partition_cpu_weight is not enforced");
    }
    return new PartitionCgroups(name, version, hierarchies, enforced, logger);
  }

  private has(controller: Controller): boolean {
    return this.hierarchies.some(({ controllers }) => controllers.includes(controller));
  }

  private cgroupsOf(reference: string): { hierarchy: Hierarchy; path: string }[] {
    checkComponent("the partition reference", reference);
    return this.hierarchies.map((hierarchy) => ({
      hierarchy,
      path: join(hierarchy.mount, this.name, reference),
    }));
  }

  /** Creates the partition's cgroups (idempotent) and writes its limits into them, lifting any no longer configured. */
  async prepare(partition: ConfinedPartition): Promise<void> {
    const writes = this.version === null ? [] : limitWrites(this.version, this.limits);
    for (const { hierarchy, path } of this.cgroupsOf(partition.reference)) {
      if (this.version === 2) {
        // v2 offers a controller to a cgroup's children only once its parent enables it.
        const enable = hierarchy.controllers.map((controller) => `+${controller}`).join(" ");
        await writeControl(join(hierarchy.mount, "cgroup.subtree_control"), enable);
        await mkdir(join(hierarchy.mount, this.name), { recursive: true });
        await writeControl(join(hierarchy.mount, this.name, "cgroup.subtree_control"), enable);
      }
      await mkdir(path, { recursive: true });
      for (const { controller, file, value, optional } of writes) {
        if (hierarchy.controllers.includes(controller)) await writeControl(join(path, file), value, optional);
      }
    }
  }

  /**
   * `argv` behind a prefix that, run as root, joins the partition's cgroups (or, without a pids
   * controller, sets RLIMIT_NPROC with prlimit) and then execs `argv`. The caller puts the switch
   * to the partition's user (`setpriv --reuid ... --`) inside `argv`: joining needs root.
   */
  wrap(partition: ConfinedPartition, argv: string[]): string[] {
    const procs = this.cgroupsOf(partition.reference).map(({ path }) => join(path, "cgroup.procs"));
    const { maxProcesses } = this.limits;
    const rlimit =
      !this.has("pids") && maxProcesses !== null ? ["prlimit", `--nproc=${maxProcesses}`, "--"] : [];
    return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", ...procs, "--", ...rlimit, ...argv];
  }

  /**
   * Kills every process of the partition on this node and returns once they are gone: first its
   * cgroups (v2 `cgroup.kill`; v1 freeze, SIGKILL each, thaw, so that nothing forks in between),
   * then, for what was started outside them, every process of its uid in the agent's mount
   * namespace. Throws, naming them, when some are still there after 10 s.
   */
  async killAll(partition: ConfinedPartition): Promise<void> {
    const deadline = Date.now() + KILL_TIMEOUT_MS;
    const cgroups = this.cgroupsOf(partition.reference);
    let left = await this.emptyCgroups(cgroups, deadline);
    if (partition.uid === 0 || partition.uid === process.getuid?.()) {
      // Without its own user (alter_user = false), a partition's stray processes cannot be told from the agent's.
      this.logger.warn(
        { partition: partition.reference, uid: partition.uid },
        "this partition runs as root or as the agent's user: only the processes in its cgroups are killed",
      );
    } else {
      const namespace = ownMountNamespace();
      let strays = processesOf(partition.uid, namespace);
      while (strays.length > 0 && Date.now() <= deadline) {
        for (const pid of strays) killProcess(pid);
        await sleep(POLL_MS);
        strays = processesOf(partition.uid, namespace);
      }
      left = [...new Set([...left, ...strays])];
    }
    if (left.length > 0) {
      throw new Error(
        `processes ${left.join(", ")} of partition ${partition.reference} (uid ${partition.uid}) are still running after ${KILL_TIMEOUT_MS / 1000} s of SIGKILL: they are likely blocked in the kernel (see /proc/PID/stack); stop the partition again once they are gone`,
      );
    }
  }

  /** Kills what the cgroups hold until they are empty or the deadline passes; returns the pids left. */
  private async emptyCgroups(
    cgroups: { hierarchy: Hierarchy; path: string }[],
    deadline: number,
  ): Promise<number[]> {
    const freezer = cgroups.find(
      ({ hierarchy }) => this.version === 1 && hierarchy.controllers.includes("freezer"),
    );
    for (;;) {
      if (this.version === 2) {
        for (const { path } of cgroups) await writeControl(join(path, "cgroup.kill"), "1", true);
      }
      const frozen = freezer !== undefined && (await this.freeze(freezer.path));
      try {
        const pids = new Set<number>();
        for (const { path } of cgroups) {
          for (const pid of await cgroupProcesses(join(path, "cgroup.procs"))) pids.add(pid);
        }
        if (pids.size === 0 || Date.now() > deadline) return [...pids];
        // One by one as well: kernels before 5.14 have no cgroup.kill.
        for (const pid of pids) killProcess(pid);
      } finally {
        if (frozen) await writeControl(join(freezer.path, "freezer.state"), "THAWED");
      }
      await sleep(POLL_MS);
    }
  }

  /** Freezes a v1 freezer cgroup; false when it does not exist. A cgroup stuck FREEZING is killed all the same. */
  private async freeze(path: string): Promise<boolean> {
    const state = join(path, "freezer.state");
    try {
      await writeFile(state, "FROZEN");
    } catch (error) {
      if (errnoOf(error) === "ENOENT") return false;
      throw error;
    }
    for (let poll = 0; poll < FREEZE_POLLS; poll++) {
      if ((await readFile(state, "utf8")).trim() === "FROZEN") break;
      await sleep(POLL_MS);
    }
    return true;
  }

  /** The partition's limits in force and current use; null when its cgroups do not exist (not prepared yet). */
  async usage(reference: string): Promise<PartitionUsage | null> {
    const cgroups = this.cgroupsOf(reference);
    if (this.version === null) return { limits: this.limits };
    const pathOf = (controller: Controller) =>
      cgroups.find(({ hierarchy }) => hierarchy.controllers.includes(controller))?.path;
    if (!(await exists(cgroups[0]?.path))) return null;
    const memory = pathOf("memory");
    const pids = pathOf("pids");
    const usage: PartitionUsage = { limits: this.limits };
    if (memory !== undefined) {
      const file = this.version === 2 ? "memory.current" : "memory.usage_in_bytes";
      usage.memoryBytes = await readCounter(join(memory, file));
    }
    if (pids !== undefined) usage.processes = await readCounter(join(pids, "pids.current"));
    return usage;
  }

  /** Removes a partition's cgroups once its processes are killed (a destroyed partition). */
  async remove(reference: string): Promise<void> {
    for (const { path } of this.cgroupsOf(reference)) await removeDirectory(path);
  }

  /** Removes every partition's cgroup and `<mount>/<name>` itself (uninstalling the agent); processes must be killed first. */
  async removeAll(): Promise<void> {
    for (const { mount } of this.hierarchies) {
      const parent = join(mount, this.name);
      const entries = await readdir(parent, { withFileTypes: true }).catch((error: unknown) => {
        if (errnoOf(error) === "ENOENT") return [];
        throw error;
      });
      for (const entry of entries) {
        if (entry.isDirectory()) await removeDirectory(join(parent, entry.name));
      }
      await removeDirectory(parent);
    }
  }
}
