import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  ComputerView,
  DesiredState,
  PartitionLayout,
  Registration,
  RegistrationRequest,
  SoftwareReport,
  SoftwareView,
  UsageReport,
} from "../../../protocol/api.js";
import { registerComputer, uploadPartitions } from "../../model/computers.js";
import { reportSoftwareState } from "../../model/software.js";
import { recordUsage } from "../../model/usage.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf } from "../identity.js";
import { ComputerParams, jsonBody, responses } from "../route.js";

const tags = ["nodes"];

/** Registration: the one call made without an identity (the token is the proof). */
export const registrationRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "post",
    path: "/register",
    tags,
    summary: "Exchange a one-time registration token for a computer identity",
    request: { body: jsonBody(RegistrationRequest) },
    responses: responses(Registration),
  }),
  async (c) => {
    const { token, title } = c.req.valid("json");
    const { db, authority } = c.get("services");
    return c.json(await registerComputer(db, authority, token, { title }), 200);
  },
);

export const nodeRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "put",
      path: "/computers/{computerId}/partitions",
      tags,
      summary: "Upload the partitions format created (idempotent; never removes partitions)",
      request: {
        params: ComputerParams,
        body: jsonBody(z.object({ partitions: z.array(PartitionLayout).max(2_000) }).strict()),
      },
      responses: responses(ComputerView),
    }),
    async (c) => {
      const view = await uploadPartitions(
        c.get("services").db,
        actorOf(c),
        c.req.valid("param").computerId,
        c.req.valid("json").partitions,
      );
      return c.json(view, 200);
    },
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/computers/{computerId}/desired-state",
      tags,
      summary:
        "What the computer must install and run. With `after` and `wait`, answers as soon as the version exceeds `after`, or after `wait` seconds.",
      request: {
        params: ComputerParams,
        query: z.object({
          after: z.coerce.number().int().nonnegative().default(0),
          wait: z.coerce.number().min(0).max(300).default(0),
        }),
      },
      responses: responses(DesiredState),
    }),
    async (c) => {
      const { desiredStates } = c.get("services");
      const { after, wait } = c.req.valid("query");
      const state = await desiredStates.wait(
        actorOf(c),
        c.req.valid("param").computerId,
        after,
        wait * 1000,
        c.req.raw.signal,
      );
      // Postgres built the JSON (see readDesiredStateDocument): sent as is, never re-encoded.
      return c.body(state.json, 200, { "content-type": "application/json" });
    },
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/computers/{computerId}/software-state",
      tags,
      summary: "Report a software release's installation state (with the build log tail on error)",
      request: { params: ComputerParams, body: jsonBody(SoftwareReport) },
      responses: responses(SoftwareView),
    }),
    async (c) => {
      const { url, state, errorLog } = c.req.valid("json");
      return c.json(
        await reportSoftwareState(
          c.get("services").db,
          actorOf(c),
          c.req.valid("param").computerId,
          url,
          state,
          errorLog,
        ),
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/computers/{computerId}/usage",
      tags,
      summary: "Report resource usage per partition",
      request: { params: ComputerParams, body: jsonBody(UsageReport) },
      responses: responses(z.object({ stored: z.number().int() })),
    }),
    async (c) => {
      const stored = await recordUsage(
        c.get("services").db,
        actorOf(c),
        c.req.valid("param").computerId,
        c.req.valid("json").records,
      );
      return c.json({ stored }, 200);
    },
  );
