import { readdirSync, readFileSync } from "node:fs";
import { execa } from "execa";

/** One live process at one instant. */
export interface ProcessSample {
  /** `pid:starttime`: a pid the kernel reuses for a later process names a different process. */
  id: string;
  /** utime + stime of all its threads, in clock ticks. */
  cpuTicks: number;
  rssBytes: number;
}

let clockTicks: Promise<number> | undefined;

/** `getconf CLK_TCK` (the unit of /proc/<pid>/stat times), asked once per agent process. */
export function clockTicksPerSecond(): Promise<number> {
  clockTicks ??= execa("getconf", ["CLK_TCK"]).then(
    ({ stdout }) => {
      const ticks = Number(stdout.trim());
      if (!Number.isInteger(ticks) || ticks <= 0) throw new Error(`getconf CLK_TCK printed '${stdout}'`);
      return ticks;
    },
    (error: Error) => {
      clockTicks = undefined;
      throw new Error(`cannot read the clock tick rate with getconf CLK_TCK (libc-bin): ${error.message}`);
    },
  );
  return clockTicks;
}

/**
 * Every live process whose real uid is one of `uids`, grouped by uid, from one pass over /proc.
 * Synchronous reads on purpose: /proc files are made in memory by the kernel, and a synchronous
 * read costs a few microseconds where an asynchronous one costs a thread-pool round trip (about
 * three times slower over a whole scan).
 */
export function sampleProcesses(uids: ReadonlySet<number>): Map<number, ProcessSample[]> {
  const byUid = new Map<number, ProcessSample[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const found = readProcess(entry, uids);
    if (found === undefined) continue;
    const samples = byUid.get(found.uid);
    if (samples === undefined) byUid.set(found.uid, [found.sample]);
    else samples.push(found.sample);
  }
  return byUid;
}

function readProcess(
  pid: string,
  uids: ReadonlySet<number>,
): { uid: number; sample: ProcessSample } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "latin1");
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (!uids.has(uid)) return undefined;
    // Kernel threads and zombies have no VmRSS.
    const rssKilobytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [utime, stime, starttime] = [fields[11], fields[12], fields[19]];
    return {
      uid,
      sample: {
        id: `${pid}:${starttime}`,
        cpuTicks: Number(utime) + Number(stime),
        rssBytes: rssKilobytes * 1024,
      },
    };
  } catch (error) {
    // The process exited while we read it.
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ESRCH") return undefined;
    throw error;
  }
}
