import { OpenAPIHono } from "@hono/zod-openapi";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { createSlapApp } from "../slap/app.js";
import type { MasterEnv, MasterServices } from "./context.js";
import { errorResponse, handleError, validationHook } from "./errors.js";
import { identify, requireActor } from "./identity.js";
import { insecureGuard } from "./insecure-guard.js";
import { refuseHostileInput } from "./refuse-hostile-input.js";
import { certificateRoutes } from "./routes/certificates.js";
import { computerRoutes } from "./routes/computers.js";
import { instanceRoutes } from "./routes/instances.js";
import { nodeRoutes, registrationRoutes } from "./routes/nodes.js";
import { organisationRoutes } from "./routes/organisations.js";
import { personRoutes } from "./routes/persons.js";

const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The JSON API under /api/v1, described by /api/v1/openapi.json. */
function createJsonApi() {
  const api = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook });
  api.doc31("/openapi.json", {
    openapi: "3.1.0",
    servers: [{ url: "/api/v1" }],
    info: {
      title: "SlapOS master",
      version: "1",
      description:
        "Persons, computers, software releases and instances. Authenticate with a client certificate.",
    },
  });
  api.route("/", registrationRoutes);
  api.use(requireActor);
  api.route("/", personRoutes);
  api.route("/", organisationRoutes);
  api.route("/", certificateRoutes);
  api.route("/", computerRoutes);
  api.route("/", instanceRoutes);
  api.route("/", nodeRoutes);
  return api;
}

/** The master's HTTP application: one listener, one model, two wire formats (JSON and SLAP). */
export function createMasterApp(services: MasterServices) {
  const app = new Hono<MasterEnv>();
  if (services.insecureAdminId) app.use(insecureGuard);
  app.use(async (c, next) => {
    c.set("services", services);
    await next();
  });
  app.use(
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => errorResponse(c, 413, "too_large", `the request body exceeds ${MAX_BODY_BYTES} bytes`),
    }),
  );
  app.use(refuseHostileInput);
  app.use(identify);
  app.route("/api/v1", createJsonApi());
  app.route("/", createSlapApp());
  app.notFound((c) => errorResponse(c, 404, "not_found", `no route ${c.req.method} ${c.req.path}`));
  app.onError(handleError);
  return app;
}
