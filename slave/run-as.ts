import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { startTicks } from "./proc.js";

/** Who a command runs as: a uid/gid (with that user's supplementary groups), or null for the agent itself. */
export type RunUser = { uid: number; gid: number } | null;

export interface RunOptions {
  cwd: string;
  /** The whole environment: nothing of the agent's own leaks into buildouts or promises. */
  env: Record<string, string>;
  /** Kills the command's whole process group after this many milliseconds; 0: no limit. */
  timeoutMs?: number;
  /**
   * Records the command's process group here while it runs. A group left by an agent that was
   * killed is killed before the command starts again, so two buildouts never share a directory.
   * It must be in a directory only root writes: the agent kills what it names.
   */
  pidFile?: string;
  /** Turns the whole command (user switch included) into one that first joins the partition's cgroup. */
  confine?: (argv: string[]) => string[];
}

/** How a command ended, with its output (stdout and stderr interleaved). */
export interface RunResult {
  exitCode: number | undefined;
  signal: string | undefined;
  output: string;
}

export const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function needsSwitch(user: RunUser): user is { uid: number; gid: number } {
  return user !== null && (user.uid !== process.getuid?.() || user.gid !== process.getgid?.());
}

/**
 * Runs a command as another user the way slapgrid drops privileges: real and effective ids and the
 * user's own supplementary groups (so a partition user reads software through `slapsoft`), in a
 * cleaned environment, never as root.
 */
export async function runAs(
  user: RunUser,
  file: string,
  args: string[],
  options: RunOptions,
): Promise<RunResult> {
  if (user !== null && (user.uid === 0 || user.gid === 0)) {
    throw new Error(`refusing to run ${file} as uid ${user.uid} / gid ${user.gid}: never as root`);
  }
  if (options.pidFile) await killLeftover(options.pidFile);
  const argv = needsSwitch(user)
    ? ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--", file, ...args]
    : [file, ...args];
  const [command = file, ...commandArgs] = options.confine ? options.confine(argv) : argv;
  const child = execa(command, commandArgs, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: false,
    reject: false,
    all: true,
    buffer: true,
    stdin: "ignore",
    // Its own process group, so that a timeout kills everything it started.
    detached: true,
    cleanup: true,
  });
  if (options.timeoutMs) {
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {}
    }, options.timeoutMs);
    child.finally(() => clearTimeout(timer)).catch(() => {});
  }
  if (options.pidFile && child.pid) await recordGroup(options.pidFile, child.pid);
  const result = await child;
  if (options.pidFile) await rm(options.pidFile, { force: true });
  return { exitCode: result.exitCode, signal: result.signal, output: String(result.all ?? "") };
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where the agent records the process group of a long command (`name`: the partition, or the
 * release's directory name): under instance_root's var/run, which only root writes, never in a
 * directory the command's user could plant a pid of its choice in.
 */
export function groupPidFile(instanceRoot: string, name: string): string {
  return join(instanceRoot, "var", "run", `slap-${name}.pid`);
}

/** `<pid> <start ticks>`: the pid alone may name another process after the leader exited. */
async function recordGroup(pidFile: string, pid: number): Promise<void> {
  await mkdir(dirname(pidFile), { recursive: true, mode: 0o755 });
  await writeFile(pidFile, `${pid} ${(await startTicks(pid)) ?? 0}\n`, { mode: 0o600 });
}

/**
 * Kills the process group a previous agent recorded in `pidFile`, and waits until it is gone.
 * Only the very process recorded (same pid, same start time) is ours: after its exit or a reboot
 * the number may belong to anyone.
 */
export async function killLeftover(pidFile: string): Promise<void> {
  const [pgid, ticks] = (await readFile(pidFile, "utf8").catch(() => "")).trim().split(" ").map(Number);
  if (pgid !== undefined && Number.isInteger(pgid) && pgid > 1 && ticks !== undefined) {
    if ((await startTicks(pgid)) === ticks && groupAlive(pgid)) {
      process.kill(-pgid, "SIGKILL");
      for (let attempt = 0; attempt < 100 && groupAlive(pgid); attempt += 1) await sleep(50);
    }
  }
  await rm(pidFile, { force: true });
}

/** The last `lines` lines of a log, for error reports. */
export function tail(text: string, lines = 40): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}
