import { constants } from "node:fs";
import { access, mkdir, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import type { Logger } from "pino";
import { bootTime, commandLine, isAlive, signal, terminateSession, waitUntilGone } from "../proc.js";
import { SYSTEM_PATH, tail } from "../run-as.js";
import { renderMainConfig, type SupervisorPaths } from "./config.js";
import { removeIfExists, writeIfChanged } from "./files.js";
import { ignoreFault, isFault, type SupervisorRpc } from "./rpc.js";
import { XmlRpcError } from "./xmlrpc.js";

/** How long a started supervisord has to answer. */
const START_TIMEOUT_MS = 30_000;
/** A supervisord stopping waits for its processes, each up to stopwaitsecs (60 s). */
const SHUTDOWN_TIMEOUT_MS = 120_000;
/** How long processes left by a dead supervisord get between SIGTERM and SIGKILL. */
const ORPHAN_GRACE_MS = 10_000;
const PROBE_TIMEOUT_MS = 2_000;

/** running: answers; busy: answers, but is starting, restarting or shutting down; silent: does not answer. */
type Probe = "running" | "busy" | "silent";

/**
 * The node's supervisord as a daemon: started detached (it daemonizes into its own session) with
 * a clean environment, so that it and the instances outlive the agent; found again by its socket
 * and pid file; recovered when it died.
 */
export class SupervisordDaemon {
  constructor(
    private readonly paths: SupervisorPaths,
    private readonly binary: string,
    private readonly rpc: SupervisorRpc,
    private readonly logger: Logger,
  ) {}

  async ensureRunning(): Promise<void> {
    await this.prepare();
    const deadline = Date.now() + SHUTDOWN_TIMEOUT_MS;
    for (;;) {
      const probe = await this.probe();
      if (probe === "running") return;
      const pid = await this.recordedPid();
      if (probe === "silent" && !(pid !== null && (await this.isOurs(pid)))) {
        await this.clearRemains(pid);
        await this.launch();
        return;
      }
      // Starting, shutting down (its processes may take a while to stop), or stuck.
      if (Date.now() >= deadline) {
        throw new Error(
          `supervisord (pid ${pid ?? "unknown"}) is running but has not answered on ${this.paths.socket} ` +
            `for ${SHUTDOWN_TIMEOUT_MS / 1000} s: see ${this.paths.logFile}, stop it (kill ${pid ?? "<pid>"}) and retry`,
        );
      }
      await sleep(200);
    }
  }

  /** Stops supervisord, which stops every process first; kills it if it does not stop. */
  async shutdown(): Promise<void> {
    const probe = await this.probe();
    const pid = probe === "running" ? await this.rpc.getPID() : await this.recordedPid();
    if (pid !== null && (await this.isOurs(pid))) {
      if (probe === "running") await this.rpc.shutdown().catch(ignoreFault("SHUTDOWN_STATE"));
      else signal(pid, "SIGTERM");
      if ((await waitUntilGone([pid], SHUTDOWN_TIMEOUT_MS)).length > 0) {
        this.logger.warn(
          { supervisordPid: pid },
          `supervisord did not stop within ${SHUTDOWN_TIMEOUT_MS / 1000} s: killing it`,
        );
        signal(pid, "SIGKILL");
        await waitUntilGone([pid], ORPHAN_GRACE_MS);
      }
    }
    await this.clearRemains(pid);
    this.logger.info({ supervisordPid: pid }, "supervisord stopped");
  }

  private async prepare(): Promise<void> {
    // var is shared with others (partition certificates, caches); log and run are supervisord's.
    await mkdir(dirname(dirname(this.paths.logFile)), { recursive: true, mode: 0o755 });
    for (const directory of [
      dirname(this.paths.configFile),
      this.paths.includeDirectory,
      dirname(this.paths.logFile),
      dirname(this.paths.pidFile),
    ]) {
      await mkdir(directory, { recursive: true, mode: 0o700 });
    }
    if (await writeIfChanged(this.paths.configFile, renderMainConfig(this.paths), 0o600)) {
      this.logger.info(
        { config: this.paths.configFile },
        "wrote supervisord's configuration; a supervisord already running reads it when it restarts",
      );
    }
  }

  private async probe(): Promise<Probe> {
    try {
      const state = await this.rpc.getState(PROBE_TIMEOUT_MS);
      return state.statename === "RUNNING" ? "running" : "busy";
    } catch (error) {
      if (isFault(error, "SHUTDOWN_STATE")) return "busy";
      // No socket, a socket nobody listens on, or no answer: the pid file tells the rest.
      if (error instanceof XmlRpcError && error.errno !== undefined) return "silent";
      throw error;
    }
  }

  private async recordedPid(): Promise<number | null> {
    const text = await readFile(this.paths.pidFile, "utf8").catch(() => "");
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** A live process of this pid is our supervisord (and not a process that reused its pid). */
  private async isOurs(pid: number): Promise<boolean> {
    return (await isAlive(pid)) && (await commandLine(pid)).includes(this.paths.configFile);
  }

  /**
   * What a dead supervisord leaves: its socket, its pid file, and its processes, which keep running
   * without it (holding ports a new supervisord's processes need). They stay in its session, whose
   * id is its pid: they are terminated, and the next deployment starts them again under the new
   * supervisord. Processes that made their own session escape this, as under SlapOS.
   */
  private async clearRemains(pid: number | null): Promise<void> {
    if (pid !== null && !(await isAlive(pid)) && (await this.pidFileIsFromThisBoot())) {
      const orphans = await terminateSession(pid, ORPHAN_GRACE_MS);
      if (orphans.length > 0) {
        this.logger.warn(
          { supervisordPid: pid, orphans },
          "terminated the processes left by a supervisord that died",
        );
      }
    }
    await removeIfExists(this.paths.socket);
    await removeIfExists(this.paths.pidFile);
  }

  /** A pid file from before the last boot names a session that cannot hold our processes any more. */
  private async pidFileIsFromThisBoot(): Promise<boolean> {
    const written = await stat(this.paths.pidFile).catch(() => null);
    return written !== null && written.mtimeMs >= (await bootTime());
  }

  private async launch(): Promise<void> {
    try {
      await access(this.binary, constants.X_OK);
    } catch {
      throw new Error(
        `supervisord is not at ${this.binary}: install supervisor into the node's Python environment (python_environment)`,
      );
    }
    this.logger.info({ config: this.paths.configFile }, "starting supervisord");
    // supervisord forks, the child makes its own session and closes our pipes, the parent exits:
    // we wait for the parent only. Its processes inherit its environment: nothing of the agent's.
    const result = await execa(this.binary, ["-c", this.paths.configFile], {
      cwd: "/",
      env: { PATH: SYSTEM_PATH },
      extendEnv: false,
      detached: true,
      cleanup: false,
      stdin: "ignore",
      all: true,
      reject: false,
      timeout: START_TIMEOUT_MS,
    });
    if (result.failed) {
      throw new Error(
        `supervisord failed to start (${result.shortMessage}): ${tail(result.all ?? "")}; see ${this.paths.logFile}`,
      );
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    while ((await this.probe()) !== "running") {
      if (Date.now() >= deadline) {
        throw new Error(
          `supervisord started but did not answer on ${this.paths.socket} within ${START_TIMEOUT_MS / 1000} s: see ${this.paths.logFile}`,
        );
      }
      await sleep(50);
    }
    this.logger.info({ supervisordPid: await this.recordedPid() }, "supervisord started");
  }
}
