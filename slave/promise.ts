import { join } from "node:path";
import { ConfinedDirectory } from "./isolation/confined-directory.js";
import type { LocalPartition } from "./partitions.js";
import { type RunUser, runAs, SYSTEM_PATH, tail } from "./run-as.js";

export interface PromiseFailure {
  name: string;
  message: string;
}

/** Legacy SlapOS promises: the executables of `<partition>/etc/promise`, in name order. */
function promiseFiles(partition: LocalPartition): Promise<string[]> {
  return ConfinedDirectory.with(partition.path, (directory) => directory.executables("etc/promise"));
}

/**
 * Runs every promise of a partition, all at once, as the partition's user, each with a timeout:
 * exit 0 is kept, anything else (or the timeout) is broken, with its output as the reason.
 */
export async function checkPromises(
  partition: LocalPartition,
  user: RunUser,
  timeoutSeconds: number,
  confine?: (argv: string[]) => string[],
): Promise<PromiseFailure[]> {
  const names = await promiseFiles(partition);
  const results = await Promise.all(
    names.map(async (name) => {
      const started = Date.now();
      const result = await runAs(user, join(partition.path, "etc", "promise", name), [], {
        cwd: partition.path,
        env: { PATH: SYSTEM_PATH, HOME: partition.path, USER: partition.user.name, LANG: "C.UTF-8" },
        timeoutMs: timeoutSeconds * 1000,
        confine,
      });
      if (result.exitCode === 0) return null;
      const output = tail(result.output, 20);
      const reason =
        result.exitCode === undefined && Date.now() - started >= timeoutSeconds * 1000
          ? `timed out after ${timeoutSeconds} s`
          : `exited ${result.exitCode ?? result.signal}`;
      return { name, message: `Promise '${name}' failed (${reason}) with output: ${output}` };
    }),
  );
  return results.filter((failure) => failure !== null);
}
