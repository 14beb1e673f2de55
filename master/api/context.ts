import type { HttpBindings } from "@hono/node-server";
import type { Logger } from "pino";
import type { Db } from "../db/connect.js";
import type { Authority } from "../identity/authority.js";
import type { Actor } from "../model/actor.js";
import type { DesiredStates } from "../model/desired-state.js";

/** What every route handler needs: one model, whichever wire format it speaks. */
export interface MasterServices {
  db: Db;
  authority: Authority;
  desiredStates: DesiredStates;
  logger: Logger;
  /** Plain HTTP on loopback, no identity checks: every caller acts as this admin person. */
  insecureAdminId?: string;
}

export interface MasterEnv {
  Bindings: HttpBindings;
  Variables: { actor: Actor | undefined; services: MasterServices };
}
