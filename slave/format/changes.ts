import type { Logger } from "pino";

/** What a format run changed: one log line each as it happens, and the list format returns. */
export class ChangeLog {
  readonly made: string[] = [];

  constructor(private readonly logger: Logger) {}

  /** `partition` is the reference (slappartN) the change belongs to, if any. */
  record(partition: string | undefined, change: string): void {
    this.made.push(partition ? `${partition}: ${change}` : change);
    this.logger.info(partition ? { partition } : {}, change);
  }
}
