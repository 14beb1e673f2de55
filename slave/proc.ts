import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

// Linux process facts read from /proc: whether a process lives (a zombie does not), its command
// line, its session; for the agent's lock and for supervisord's recovery.

interface ProcessStat {
  /** R, S, D, Z (zombie)... */
  state: string;
  /** The session id: the pid of the session's leader, alive or not. */
  session: number;
  /** Clock ticks since boot when it started: with the pid, names one process for the machine's uptime. */
  startTicks: number;
}

async function readStat(pid: number): Promise<ProcessStat | null> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name, in parentheses, may hold spaces and parentheses: fields follow the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: fields[0] ?? "", session: Number(fields[3]), startTicks: Number(fields[19]) };
}

/** Whether a process exists; a zombie does not count, it has only to be reaped. */
export async function isAlive(pid: number): Promise<boolean> {
  const stat = await readStat(pid);
  return stat !== null && stat.state !== "Z";
}

/** When a live process started (clock ticks since boot), or null when there is none. */
export async function startTicks(pid: number): Promise<number | null> {
  const stat = await readStat(pid);
  return stat && stat.state !== "Z" ? stat.startTicks : null;
}

export async function commandLine(pid: number): Promise<string[]> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

/** When the machine booted, in milliseconds since the epoch. */
export async function bootTime(): Promise<number> {
  const match = /^btime (\d+)$/m.exec(await readFile("/proc/stat", "utf8"));
  if (!match?.[1]) throw new Error("/proc/stat has no btime line: is /proc mounted?");
  return Number(match[1]) * 1000;
}

/** Every live process of a session. */
async function sessionMembers(session: number): Promise<number[]> {
  const pids = (await readdir("/proc")).filter((entry) => /^\d+$/.test(entry)).map(Number);
  const members: number[] = [];
  for (const pid of pids) {
    const stat = await readStat(pid);
    if (stat && stat.state !== "Z" && stat.session === session) members.push(pid);
  }
  return members;
}

/** Waits until none of `pids` is alive; returns those still alive at the deadline. */
export async function waitUntilGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let remaining = pids;
  for (;;) {
    const alive = await Promise.all(remaining.map(isAlive));
    remaining = remaining.filter((_, index) => alive[index]);
    if (remaining.length === 0 || Date.now() >= deadline) return remaining;
    await sleep(50);
  }
}

/** Sends a signal, if the process is still there. */
export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/** Terminates every process of a session: SIGTERM, then SIGKILL for those still there after `graceMs`. */
export async function terminateSession(session: number, graceMs: number): Promise<number[]> {
  const members = await sessionMembers(session);
  for (const pid of members) signal(pid, "SIGTERM");
  const stubborn = await waitUntilGone(members, graceMs);
  for (const pid of stubborn) signal(pid, "SIGKILL");
  await waitUntilGone(stubborn, graceMs);
  return members;
}
