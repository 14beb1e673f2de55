import { mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import type { Logger } from "pino";
import { z } from "zod";

const Counts = z.record(z.string(), z.number().nonnegative());

/** What a partition's counters read at the end of the last reported period. */
const Baseline = z.object({
  /** ISO timestamp: the next record's periodStart. */
  at: z.iso.datetime(),
  /** utime + stime in clock ticks of each live process, by `pid:starttime`. */
  processTicks: Counts,
  /** Bytes of each nftables counter, by counter name. */
  rxBytes: Counts,
  txBytes: Counts,
});
export type Baseline = z.infer<typeof Baseline>;

const UsageState = z.object({ version: z.literal(1), baselines: z.record(z.string(), Baseline) });
export type UsageState = z.infer<typeof UsageState>;

export function emptyUsageState(): UsageState {
  return { version: 1, baselines: {} };
}

/**
 * The baselines saved by the last collection. A missing file is a fresh start; an unreadable one
 * is logged and replaced (this period's usage is lost, which beats never reporting again).
 */
export async function readUsageState(file: string, logger: Logger): Promise<UsageState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return emptyUsageState();
    throw new Error(`cannot read the usage state ${file}: ${(error as Error).message}`);
  }
  try {
    return UsageState.parse(JSON.parse(text));
  } catch (error) {
    logger.warn(
      { file, error: (error as Error).message },
      "the usage state is not valid: starting new baselines, usage since the last collection is not reported",
    );
    return emptyUsageState();
  }
}

/** Writes the state atomically (temporary file, fsync, rename): a crash leaves the old or the new one. */
export async function writeUsageState(file: string, state: UsageState): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  const handle = await open(temporary, "w", 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(state)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
}
