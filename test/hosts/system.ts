import { execa } from "execa";

/** Runs a command on this machine (root namespaces) and fails with its stderr. */
export async function run(file: string, args: string[], input?: string): Promise<string> {
  const result = await execa(file, args, { input, reject: false });
  if (result.exitCode !== 0) {
    throw new Error(
      `${file} ${args.join(" ")} failed (${result.exitCode}): ${result.stderr || result.stdout}`,
    );
  }
  return result.stdout;
}

/** Like run, for teardown paths where the object may already be gone. */
export async function runQuietly(file: string, args: string[]): Promise<void> {
  await execa(file, args, { reject: false });
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** SIGTERM, then SIGKILL for whatever is still alive after the grace period. */
export async function killPids(pids: number[], graceMs = 2_000): Promise<void> {
  const signal = (pid: number, name: NodeJS.Signals) => {
    try {
      process.kill(pid, name);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  const deadline = Date.now() + graceMs;
  while (pids.some(isProcessAlive) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const pid of pids.filter(isProcessAlive)) signal(pid, "SIGKILL");
}
