import { z } from "zod";
import { callXmlRpc, XmlRpcError, XmlRpcFault, type XmlRpcParam, type XmlRpcValue } from "./xmlrpc.js";

/** supervisord's fault codes (supervisor/xmlrpc.py `Faults`), also the `status` of group results. */
export const Faults = {
  UNKNOWN_METHOD: 1,
  INCORRECT_PARAMETERS: 2,
  BAD_ARGUMENTS: 3,
  SIGNATURE_UNSUPPORTED: 4,
  SHUTDOWN_STATE: 6,
  BAD_NAME: 10,
  BAD_SIGNAL: 11,
  NO_FILE: 20,
  NOT_EXECUTABLE: 21,
  FAILED: 30,
  ABNORMAL_TERMINATION: 40,
  SPAWN_ERROR: 50,
  ALREADY_STARTED: 60,
  NOT_RUNNING: 70,
  SUCCESS: 80,
  ALREADY_ADDED: 90,
  STILL_RUNNING: 91,
  CANT_REREAD: 92,
} as const;
export type FaultName = keyof typeof Faults;

export function faultName(code: number): string {
  return Object.entries(Faults).find(([, value]) => value === code)?.[0] ?? `fault ${code}`;
}

export function isFault(error: unknown, name: FaultName): error is XmlRpcFault {
  return error instanceof XmlRpcFault && error.code === Faults[name];
}

/** A `.catch` handler that lets one fault pass, as when stopping what is already stopped. */
export function ignoreFault(name: FaultName) {
  return (error: unknown): void => {
    if (!isFault(error, name)) throw error;
  };
}

const stateSchema = z.object({ statecode: z.number(), statename: z.string() });

const processInfoSchema = z.object({
  group: z.string(),
  name: z.string(),
  statename: z.string(),
  pid: z.number(),
  exitstatus: z.number(),
  description: z.string(),
});
export type RawProcessInfo = z.infer<typeof processInfoSchema>;

/** One process's outcome in a start/stop of a whole group. */
const groupResultSchema = z.object({
  group: z.string(),
  name: z.string(),
  status: z.number(),
  description: z.string(),
});
export type GroupResult = z.infer<typeof groupResultSchema>;

const reloadSchema = z
  .tuple([z.tuple([z.array(z.string()), z.array(z.string()), z.array(z.string())])])
  .transform(([[added, changed, removed]]) => ({ added, changed, removed }));

/** Quick questions; an answer that takes longer means supervisord is stuck. */
const QUICK_MS = 10_000;
/** Group starts and stops wait for processes: a stop up to stopwaitsecs (60 s) before killing. */
const WAITING_MS = 120_000;

/** supervisord's `supervisor.*` XML-RPC methods that the agent uses, with checked answers. */
export class SupervisorRpc {
  constructor(readonly socketPath: string) {}

  private async call<T>(
    method: string,
    params: XmlRpcParam[],
    schema: z.ZodType<T>,
    timeoutMs = QUICK_MS,
  ): Promise<T> {
    let answer: XmlRpcValue;
    try {
      answer = await callXmlRpc(this.socketPath, `supervisor.${method}`, params, timeoutMs);
    } catch (error) {
      if (error instanceof XmlRpcError && (error.errno === "ENOENT" || error.errno === "ECONNREFUSED")) {
        throw new XmlRpcError(
          `${error.message}: supervisord is not running (ensureRunning starts it)`,
          error.errno,
        );
      }
      throw error;
    }
    const parsed = schema.safeParse(answer);
    if (!parsed.success) {
      throw new Error(
        `supervisord answered supervisor.${method} unexpectedly: ${z.prettifyError(parsed.error)}`,
      );
    }
    return parsed.data;
  }

  getState(timeoutMs?: number) {
    return this.call("getState", [], stateSchema, timeoutMs);
  }

  getPID() {
    return this.call("getPID", [], z.number());
  }

  /** Re-reads the configuration files; groups are only compared, nothing is applied. */
  reloadConfig() {
    return this.call("reloadConfig", [], reloadSchema);
  }

  async addProcessGroup(group: string): Promise<void> {
    await this.call("addProcessGroup", [group], z.literal(true));
  }

  /** Waits until every process of the group has stopped (or was killed). */
  stopProcessGroup(group: string) {
    return this.call("stopProcessGroup", [group, true], z.array(groupResultSchema), WAITING_MS);
  }

  async removeProcessGroup(group: string): Promise<void> {
    await this.call("removeProcessGroup", [group], z.literal(true));
  }

  /** Starts the processes of the group that are not running, and waits until they run. */
  startProcessGroup(group: string) {
    return this.call("startProcessGroup", [group, true], z.array(groupResultSchema), WAITING_MS);
  }

  getAllProcessInfo() {
    return this.call("getAllProcessInfo", [], z.array(processInfoSchema));
  }

  /** Asks supervisord to stop every process, then exit; it answers before doing so. */
  async shutdown(): Promise<void> {
    await this.call("shutdown", [], z.literal(true));
  }
}
