import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { RenewedCertificate } from "../../../protocol/api.js";
import { renewCertificate } from "../../model/renewal.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf, presentedSerial } from "../identity.js";
import { responses } from "../route.js";

const tags = ["certificates"];

export const certificateRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook }).openapi(
  createRoute({
    method: "post",
    path: "/certificates/renew",
    tags,
    summary:
      "A new certificate and key for the person or computer presenting a valid one; the presented one keeps working until it expires",
    responses: responses(RenewedCertificate),
  }),
  async (c) => {
    const { db, authority } = c.get("services");
    return c.json(await renewCertificate(db, authority, actorOf(c), presentedSerial(c)), 200);
  },
);
