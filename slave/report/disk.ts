import { execa } from "execa";
import type { Logger } from "pino";

/**
 * Bytes allocated on disk by each directory tree (`du -sx --block-size=1`: each inode once,
 * symlinks not followed, other filesystems not entered), by path, from one `du` process for all
 * of them. Allocated rather than apparent size: what the disk really holds, so a sparse file costs
 * what it occupies. du rather than a Node lstat walk: its C walk is about ten times faster (20,000
 * files: 36 ms against 420 ms), where Node pays a thread-pool round trip per file.
 * A path du cannot measure is missing from the result, and logged.
 */
export async function diskUsage(paths: string[], logger: Logger): Promise<Map<string, number>> {
  const usage = new Map<string, number>();
  const unique = [...new Set(paths)];
  if (unique.length === 0) return usage;
  // Names go through stdin, NUL-separated: no length limit, any character allowed.
  const result = await execa(
    "du",
    ["--summarize", "--one-file-system", "--block-size=1", "--null", "--files0-from=-"],
    { input: unique.join("\0"), reject: false },
  );
  if (result.failed && result.exitCode === undefined) {
    throw new Error(`cannot run du (coreutils) to measure partition disk usage: ${result.shortMessage}`);
  }
  for (const line of result.stdout.split("\0")) {
    const tab = line.indexOf("\t");
    if (tab > 0) usage.set(line.slice(tab + 1), Number(line.slice(0, tab)));
  }
  if (result.exitCode !== 0) {
    // Typically a file removed during the walk: the totals printed are still right.
    logger.warn({ stderr: result.stderr.trim() }, "du reported errors while measuring partition disk usage");
  }
  return usage;
}
