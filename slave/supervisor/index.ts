import { chmod, chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { ConfinedDirectory } from "../isolation/confined-directory.js";
import { assertRunsAsPartitionUser } from "./accounts.js";
import {
  assertConfigSafe,
  type Confine,
  programLogFile,
  renderPartitionConfig,
  type SupervisorPaths,
  supervisorPaths,
} from "./config.js";
import { SupervisordDaemon } from "./daemon.js";
import { removeIfExists, writeIfChanged } from "./files.js";
import { type Program, scanPrograms, WATCH_MARK } from "./programs.js";
import { Faults, faultName, type GroupResult, isFault, SupervisorRpc } from "./rpc.js";
import { KeyedQueue } from "./serial.js";

export interface SupervisorOptions {
  /** supervisord's files live under it: etc/supervisord.conf, etc/supervisord.conf.d/, sv.sock, var/log, var/run. */
  instanceRoot: string;
  /** supervisord is `<pythonEnvironment>/bin/supervisord`. */
  pythonEnvironment: string;
  logger: Logger;
}

/** A partition whose etc/run and etc/service programs supervisord runs, as its user. */
export interface PartitionProcesses {
  reference: string;
  path: string;
  uid: number;
  gid: number;
  userName: string;
  /** Confines each program to the partition's cgroup (see renderPartitionConfig). */
  confine?: Confine;
}

export interface ProcessInfo {
  /** The partition reference. */
  group: string;
  /** `<name>` for etc/run, `<name>-on-watch` for etc/service. */
  name: string;
  /** supervisord's state name: RUNNING, EXITED, FATAL, STOPPED, STARTING, BACKOFF, STOPPING, UNKNOWN. */
  state: string;
  /** 0 when not running. */
  pid: number;
  exitStatus: number;
  description: string;
  /** An etc/service program: its exit is reported to the master. */
  watched: boolean;
}

/** Queue key of supervisord itself; references cannot hold a NUL. */
const DAEMON = "\0supervisord";

/**
 * The node's one supervisord, driven over XML-RPC on its unix socket, with each partition's
 * programs as one process group, configured as slapgrid configures them (slapos.core 1.24.0).
 */
export class Supervisor {
  private readonly paths: SupervisorPaths;
  private readonly rpc: SupervisorRpc;
  private readonly daemon: SupervisordDaemon;
  private readonly logger: Logger;
  private readonly queue = new KeyedQueue();
  /** The configuration each group was last loaded with: an unchanged one needs no reload. */
  private readonly loaded = new Map<string, string>();

  constructor(options: SupervisorOptions) {
    this.paths = supervisorPaths(options.instanceRoot);
    this.logger = options.logger;
    this.rpc = new SupervisorRpc(this.paths.socket);
    this.daemon = new SupervisordDaemon(
      this.paths,
      join(options.pythonEnvironment, "bin", "supervisord"),
      this.rpc,
      this.logger,
    );
  }

  /**
   * Writes the main config (only if changed) and starts supervisord unless it already answers on
   * the socket; waits until it answers. Recovers from a supervisord that died (stale socket and pid
   * file, processes left running). Safe to call on every pass.
   */
  ensureRunning(): Promise<void> {
    return this.queue.run(DAEMON, () => this.daemon.ensureRunning());
  }

  /**
   * Writes conf.d/<reference>.conf from the partition's etc/run and etc/service executables and
   * makes supervisord match it: a new group is added, a changed one stopped and reloaded; then every
   * process not running is started. Unchanged and running: nothing is restarted. No program at all:
   * the group is removed.
   */
  async deployPartition(partition: PartitionProcesses): Promise<void> {
    assertConfigSafe(partition.reference, "the partition reference");
    assertConfigSafe(partition.path, `the path of ${partition.reference}`);
    assertConfigSafe(partition.userName, `the user of ${partition.reference}`);
    return this.queue.run(partition.reference, () => this.deploy(partition));
  }

  /** Stops and removes the partition's group and deletes its conf file; no error if absent. */
  async stopPartition(reference: string): Promise<void> {
    assertConfigSafe(reference, "the partition reference");
    return this.queue.run(reference, () => this.remove(reference));
  }

  /** Deletes the partition's program logs: the next tenant of the partition has the same user. */
  async discardLogs(reference: string): Promise<void> {
    assertConfigSafe(reference, "the partition reference");
    await rm(this.logDirectory(reference), { recursive: true, force: true });
  }

  /** Every process supervisord knows, for the watchdog and tests. */
  async processes(): Promise<ProcessInfo[]> {
    return (await this.rpc.getAllProcessInfo()).map((info) => ({
      group: info.group,
      name: info.name,
      state: info.statename,
      pid: info.pid,
      exitStatus: info.exitstatus,
      description: info.description,
      watched: info.name.endsWith(WATCH_MARK),
    }));
  }

  /** Stops supervisord and every process (used by uninstall and tests). */
  shutdown(): Promise<void> {
    return this.queue.run(DAEMON, async () => {
      await this.daemon.shutdown();
      this.loaded.clear();
    });
  }

  private configFile(reference: string): string {
    return join(this.paths.includeDirectory, `${reference}.conf`);
  }

  private logDirectory(reference: string): string {
    return join(this.paths.programLogDirectory, reference);
  }

  /**
   * The partition's log directory, root's and readable by the partition's group; and in the
   * partition, where SlapOS keeps them, a link `.<program id>.log` to each log (supervisord never
   * goes through those links: they are for the partition's user to read its logs).
   */
  private async prepareLogs(partition: PartitionProcesses, programs: Program[], asRoot: boolean) {
    const directory = this.logDirectory(partition.reference);
    await mkdir(directory, { recursive: true, mode: 0o750 });
    if (asRoot) await chown(directory, 0, partition.gid);
    await chmod(directory, 0o750);
    await ConfinedDirectory.with(partition.path, async (files) => {
      for (const { name } of programs) {
        const id = `${partition.reference}_${name}`;
        await files.link(`.${id}.log`, programLogFile(directory, id));
      }
    });
  }

  private async deploy(partition: PartitionProcesses): Promise<void> {
    const { reference, path } = partition;
    const programs = await scanPrograms(path);
    if (programs.length === 0) {
      this.logger.warn({ partition: reference }, "no program in etc/run nor etc/service: nothing to run");
      await this.remove(reference);
      return;
    }
    // Without root, supervisord cannot switch users: processes run as the agent's user.
    const asRoot = process.getuid?.() === 0;
    const config = renderPartitionConfig({
      reference,
      path,
      uid: asRoot ? partition.uid : null,
      gid: asRoot ? partition.gid : null,
      confine: asRoot ? partition.confine : undefined,
      userName: partition.userName,
      programs,
      logDirectory: this.logDirectory(reference),
    });
    const changed = this.loaded.get(reference) !== config;
    if (changed && asRoot) await assertRunsAsPartitionUser(partition);
    await this.prepareLogs(partition, programs, asRoot);
    await writeIfChanged(this.configFile(reference), config, 0o600);
    if (changed) await this.load(reference, config);
    let results: GroupResult[];
    try {
      results = await this.rpc.startProcessGroup(reference);
    } catch (error) {
      if (!isFault(error, "BAD_NAME")) throw error;
      // Removed behind our back (supervisorctl remove, or a supervisord restarted without it).
      await this.load(reference, config);
      results = await this.rpc.startProcessGroup(reference);
    }
    this.checkStarted(partition, programs, results);
  }

  /** Makes supervisord's group match the configuration file, restarting it when it changed. */
  private async load(reference: string, config: string): Promise<void> {
    const { added, changed } = await this.rpc.reloadConfig();
    if (changed.includes(reference)) {
      await this.stopGroup(reference);
      await this.rpc.removeProcessGroup(reference);
      await this.rpc.addProcessGroup(reference);
      this.logger.info({ partition: reference }, "programs changed: group stopped and reloaded");
    } else if (added.includes(reference)) {
      await this.rpc.addProcessGroup(reference);
      this.logger.info({ partition: reference }, "group added");
    }
    this.loaded.set(reference, config);
  }

  private async remove(reference: string): Promise<void> {
    await removeIfExists(this.configFile(reference));
    this.loaded.delete(reference);
    if (!(await this.stopGroup(reference))) return;
    await this.rpc.removeProcessGroup(reference);
    this.logger.info({ partition: reference }, "group stopped and removed");
  }

  /** Stops every process of the group; false when supervisord has no such group. */
  private async stopGroup(reference: string): Promise<boolean> {
    let results: GroupResult[];
    try {
      results = await this.rpc.stopProcessGroup(reference);
    } catch (error) {
      if (isFault(error, "BAD_NAME")) return false;
      throw error;
    }
    const failed = results.filter(({ status }) => status !== Faults.SUCCESS);
    if (failed.length > 0) {
      throw new Error(
        `${reference}: supervisord could not stop ${failed.map(({ name, description }) => `${name} (${description})`).join(", ")}: ` +
          `see ${this.paths.logFile}; kill them by hand if they hang, then retry`,
      );
    }
    return true;
  }

  /**
   * A process that exits at once (a service failing, or a one-shot command exiting non-zero) comes
   * back as SPAWN_ERROR or ABNORMAL_TERMINATION, depending on whether supervisord saw it exit
   * before answering: it ran, and its EXITED or FATAL state is for the watchdog, as under SlapOS.
   * Anything else (NO_FILE, NOT_EXECUTABLE...) means it could not be run at all.
   */
  private checkStarted(partition: PartitionProcesses, programs: Program[], results: GroupResult[]): void {
    const { reference } = partition;
    const logOf = (processName: string) => {
      const program = programs.find((each) => each.processName === processName);
      return programLogFile(this.logDirectory(reference), `${reference}_${program?.name ?? processName}`);
    };
    const started = results.filter(({ status }) => status === Faults.SUCCESS).map(({ name }) => name);
    if (started.length > 0) this.logger.info({ partition: reference, started }, "processes started");
    const ranAndExited = new Set<number>([Faults.SPAWN_ERROR, Faults.ABNORMAL_TERMINATION]);
    for (const { name, description } of results.filter(({ status }) => ranAndExited.has(status))) {
      this.logger.warn(
        { partition: reference, process: name, log: logOf(name) },
        `exited at once: ${description}`,
      );
    }
    const failed = results.filter(({ status }) => status !== Faults.SUCCESS && !ranAndExited.has(status));
    if (failed.length === 0) return;
    throw new Error(
      `${reference}: supervisord could not start ${failed
        .map(({ name, status, description }) => `${name} (${faultName(status)}: ${description})`)
        .join(", ")}: check that etc/run and etc/service hold executables the partition user can run`,
    );
  }
}
