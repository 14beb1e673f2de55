import type { Logger } from "pino";
import type { MasterClient } from "../protocol/client.js";
import type { NodeConfig } from "./config.js";
import type { PartitionCgroups } from "./isolation/cgroups.js";
import type { RunUser } from "./run-as.js";
import type { Supervisor } from "./supervisor/index.js";

/** What every step of the agent works with. */
export interface AgentContext {
  config: NodeConfig;
  client: MasterClient;
  supervisor: Supervisor;
  logger: Logger;
  /** Who software buildouts run as: `slapsoft`, or the agent itself without user switching. */
  softwareUser: RunUser;
  /** Each partition's cgroup: its limits, and how every process of it ends. */
  cgroups: PartitionCgroups;
}
