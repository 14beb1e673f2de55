import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  ComputerSettings,
  ComputerView,
  PartitionSettings,
  PartitionView,
  SoftwareView,
  SupplyRequest,
} from "../../../protocol/api.js";
import {
  configurePartition,
  deregisterComputer,
  getComputer,
  listComputers,
  updateComputer,
} from "../../model/computers.js";
import { supplySoftware } from "../../model/software.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf } from "../identity.js";
import { ComputerParams, jsonBody, PartitionParams, responses } from "../route.js";

const tags = ["computers"];

export const computerRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "get",
      path: "/computers",
      tags,
      summary: "The computers you own",
      responses: responses(z.array(ComputerView)),
    }),
    async (c) => c.json(await listComputers(c.get("services").db, actorOf(c)), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/computers/{computerId}",
      tags,
      summary: "A computer with its partitions and software",
      request: { params: ComputerParams },
      responses: responses(ComputerView),
    }),
    async (c) =>
      c.json(await getComputer(c.get("services").db, actorOf(c), c.req.valid("param").computerId), 200),
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/computers/{computerId}",
      tags,
      summary: "Deregister a computer (refused while it hosts instances): its certificates are revoked",
      request: { params: ComputerParams },
      responses: responses(z.object({ ok: z.literal(true) })),
    }),
    async (c) => {
      await deregisterComputer(c.get("services").db, actorOf(c), c.req.valid("param").computerId);
      return c.json({ ok: true as const }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "patch",
      path: "/computers/{computerId}",
      tags,
      summary: "Change a computer's title, region, capabilities or price",
      request: { params: ComputerParams, body: jsonBody(ComputerSettings) },
      responses: responses(ComputerView),
    }),
    async (c) =>
      c.json(
        await updateComputer(
          c.get("services").db,
          actorOf(c),
          c.req.valid("param").computerId,
          c.req.valid("json"),
        ),
        200,
      ),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/computers/{computerId}/partitions/{reference}",
      tags,
      summary:
        "Set or clear a partition's extras (routable IPv4, block device; null clears), which its node applies before deploying there",
      request: { params: PartitionParams, body: jsonBody(PartitionSettings) },
      responses: responses(PartitionView),
    }),
    async (c) => {
      const { computerId, reference } = c.req.valid("param");
      return c.json(
        await configurePartition(
          c.get("services").db,
          actorOf(c),
          computerId,
          reference,
          c.req.valid("json"),
        ),
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/computers/{computerId}/software",
      tags,
      summary: "Supply a software release to a computer (state available) or remove it (state destroyed)",
      request: { params: ComputerParams, body: jsonBody(SupplyRequest) },
      responses: responses(SoftwareView),
    }),
    async (c) => {
      const { url, state } = c.req.valid("json");
      return c.json(
        await supplySoftware(c.get("services").db, actorOf(c), c.req.valid("param").computerId, url, state),
        200,
      );
    },
  );
