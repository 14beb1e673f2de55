/**
 * Progress lines: the engine shows what the plugin process prints (a dynamic provider has no
 * other channel), so every line names the resource it is about.
 */
export function progress(subject: string, message: string): void {
  console.log(`${subject}: ${message}`);
}

export class WaitTimeoutError extends Error {
  constructor(subject: string, what: string, seconds: number, last: string) {
    super(
      `${subject}: gave up after ${seconds} s waiting for ${what}; last seen: ${last}. Raise customTimeouts on the resource if it needs longer.`,
    );
    this.name = "WaitTimeoutError";
  }
}

export type Poll<T> = { done: T } | { waiting: string };

/**
 * Polls until `check` says done, printing each new state it reports, and fails after
 * `timeoutSeconds` naming what it was waiting for and the last state seen.
 */
export async function waitUntil<T>(
  subject: string,
  what: string,
  timeoutSeconds: number,
  check: () => Promise<Poll<T>>,
  intervalMs = 500,
): Promise<T> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  let last = "";
  for (;;) {
    const result = await check();
    if ("done" in result) return result.done;
    if (result.waiting !== last) progress(subject, result.waiting);
    last = result.waiting;
    if (Date.now() >= deadline) throw new WaitTimeoutError(subject, what, timeoutSeconds, last);
    await new Promise((wake) => setTimeout(wake, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}

/** The last lines of a log, for errors that must fit in a terminal. */
export function logTail(log: string | null | undefined, lines = 30): string {
  if (!log) return "(no log)";
  return log.trimEnd().split("\n").slice(-lines).join("\n");
}
