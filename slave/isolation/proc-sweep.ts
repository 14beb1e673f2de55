import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** The agent's mount namespace (`mnt:[4026531841]`): a process elsewhere belongs to another host. */
export function ownMountNamespace(): string {
  return readlinkSync("/proc/self/ns/mnt");
}

/**
 * The live processes whose real or effective uid is `uid` and whose mount namespace is
 * `mountNamespace`. Other hosts sharing this kernel (test hosts, containers without their own pid
 * namespace) reuse uid numbers, but each has its own mount namespace: their processes are never
 * listed. Zombies are left out: they hold nothing, cannot be killed, and are gone once their parent
 * reaps them. Synchronous reads, as in report/processes.ts: /proc is in memory, and the kill loop
 * must see a fork bomb's children as fast as possible.
 */
export function processesOf(uid: number, mountNamespace: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, "latin1");
      const [real, effective] = (/^Uid:\s+(\d+)\s+(\d+)/m.exec(status) ?? []).slice(1).map(Number);
      if (real !== uid && effective !== uid) continue;
      if (/^State:\s+[ZX]/m.test(status)) continue;
      if (readlinkSync(`/proc/${entry}/ns/mnt`) !== mountNamespace) continue;
      found.push(Number(entry));
    } catch (error) {
      // It exited while we read it.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ESRCH") throw error;
    }
  }
  return found;
}

/** SIGKILL, for a process that may have exited already. */
export function killProcess(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}
