import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  ConnectionParameters,
  Credentials,
  InstanceRequest,
  InstanceStateReport,
  InstanceView,
} from "../../../protocol/api.js";
import { getInstanceCredentials } from "../../model/instance-certificates.js";
import {
  bangInstance,
  completeDestruction,
  getInstance,
  listInstances,
  reportInstanceState,
  requestInstance,
  setConnectionParameters,
} from "../../model/instances.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf } from "../identity.js";
import { InstanceParams, jsonBody, responses } from "../route.js";

const tags = ["instances"];

export const instanceRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "post",
      path: "/instances",
      tags,
      summary:
        "Request an instance (as a person: a root; as an instance: a child in its tree). The same title again updates it.",
      request: { body: jsonBody(InstanceRequest) },
      responses: responses(InstanceView),
    }),
    async (c) => c.json(await requestInstance(c.get("services").db, actorOf(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/instances",
      tags,
      summary: "Your instances",
      responses: responses(z.array(InstanceView)),
    }),
    async (c) => c.json(await listInstances(c.get("services").db, actorOf(c)), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/instances/{instanceId}",
      tags,
      summary: "An instance: status, partition, addresses, connection parameters",
      request: { params: InstanceParams },
      responses: responses(InstanceView),
    }),
    async (c) =>
      c.json(await getInstance(c.get("services").db, actorOf(c), c.req.valid("param").instanceId), 200),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/instances/{instanceId}/connection-parameters",
      tags,
      summary:
        "Publish connection parameters (the instance itself, its node, or the host of a shared instance)",
      request: { params: InstanceParams, body: jsonBody(ConnectionParameters) },
      responses: responses(InstanceView),
    }),
    async (c) =>
      c.json(
        await setConnectionParameters(
          c.get("services").db,
          actorOf(c),
          c.req.valid("param").instanceId,
          c.req.valid("json").parameters,
        ),
        200,
      ),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/instances/{instanceId}/reported-state",
      tags,
      summary:
        "The node reports the instance's state for the version (timestamp) it deployed, with the error log when it failed; a report about a replaced version is refused (409)",
      request: { params: InstanceParams, body: jsonBody(InstanceStateReport) },
      responses: responses(InstanceView),
    }),
    async (c) => {
      const { state, errorLog, timestamp } = c.req.valid("json");
      return c.json(
        await reportInstanceState(c.get("services").db, actorOf(c), c.req.valid("param").instanceId, state, {
          errorLog,
          timestamp,
        }),
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/instances/{instanceId}/bang",
      tags,
      summary: "Something broke: redeploy every instance of the tree",
      request: { params: InstanceParams },
      responses: responses(z.object({ ok: z.literal(true) })),
    }),
    async (c) => {
      await bangInstance(c.get("services").db, actorOf(c), c.req.valid("param").instanceId);
      return c.json({ ok: true as const }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/instances/{instanceId}/destroyed",
      tags,
      summary: "The node destroyed the instance's files: free its partition",
      request: { params: InstanceParams },
      responses: responses(InstanceView),
    }),
    async (c) =>
      c.json(
        await completeDestruction(c.get("services").db, actorOf(c), c.req.valid("param").instanceId),
        200,
      ),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/instances/{instanceId}/credentials",
      tags,
      summary: "The instance's certificate and key, for the node that runs it",
      request: { params: InstanceParams },
      responses: responses(Credentials),
    }),
    async (c) => {
      const { db, authority } = c.get("services");
      return c.json(
        await getInstanceCredentials(db, authority, actorOf(c), c.req.valid("param").instanceId),
        200,
      );
    },
  );
