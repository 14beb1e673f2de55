/** What one partition may use at most; null: no limit. */
export interface PartitionLimits {
  /** Processes and threads at once (`pids.max`; RLIMIT_NPROC of the partition's uid without a pids controller). */
  maxProcesses: number | null;
  /** Memory and swap together, in bytes (`memory.max`, `memory.limit_in_bytes`). */
  maxMemoryBytes: number | null;
  /** The partition's share of CPU time when the CPUs are busy, 1..10000, 100 being the default share. */
  cpuWeight: number | null;
}

/** The cgroup controllers that enforce limits (v2 and v1 alike); v1 also uses `freezer` to kill. */
export const LIMIT_CONTROLLERS = ["pids", "memory", "cpu"] as const;
export type LimitController = (typeof LIMIT_CONTROLLERS)[number];

export interface LimitWrite {
  controller: LimitController;
  file: string;
  value: string;
  /** Absent when the kernel does not account swap (no swap, or `swapaccount=0`): skipped then. */
  optional?: boolean;
}

const DEFAULT_CPU_WEIGHT = 100;

/**
 * The files to write, in order, so that a partition's cgroup holds exactly `limits`. Every limit is
 * written, unlimited ones included, so that a limit removed from the configuration is lifted.
 *
 * Memory covers swap too, or a partition could swap its way past its limit: v1 bounds memory+swap
 * (`memory.memsw.limit_in_bytes`, which must never be below `memory.limit_in_bytes`, hence
 * unlimited first); v2 bounds swap on its own (`memory.swap.max`), so it gets none.
 */
export function limitWrites(version: 1 | 2, limits: PartitionLimits): LimitWrite[] {
  const { maxProcesses, maxMemoryBytes, cpuWeight } = limits;
  const weight = cpuWeight ?? DEFAULT_CPU_WEIGHT;
  if (version === 2) {
    return [
      { controller: "pids", file: "pids.max", value: String(maxProcesses ?? "max") },
      { controller: "memory", file: "memory.max", value: String(maxMemoryBytes ?? "max") },
      {
        controller: "memory",
        file: "memory.swap.max",
        value: maxMemoryBytes === null ? "max" : "0",
        optional: true,
      },
      { controller: "cpu", file: "cpu.weight", value: String(weight) },
    ];
  }
  const memory = String(maxMemoryBytes ?? -1);
  return [
    { controller: "pids", file: "pids.max", value: String(maxProcesses ?? "max") },
    { controller: "memory", file: "memory.memsw.limit_in_bytes", value: "-1", optional: true },
    { controller: "memory", file: "memory.limit_in_bytes", value: memory },
    { controller: "memory", file: "memory.memsw.limit_in_bytes", value: memory, optional: true },
    // v1's default share is 1024 where v2's default weight is 100; the kernel's minimum share is 2.
    { controller: "cpu", file: "cpu.shares", value: String(Math.max(2, Math.round((weight * 1024) / 100))) },
  ];
}
