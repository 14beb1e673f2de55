import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { Bill, PersonIdentity, PersonRequest, Token, TokenRequest } from "../../../protocol/api.js";
import { computeBill } from "../../model/billing.js";
import { createRegistrationToken } from "../../model/computers.js";
import { createPerson, revokePerson } from "../../model/persons.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf } from "../identity.js";
import { jsonBody, PersonParams, responses } from "../route.js";

const tags = ["persons"];

export const personRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "post",
      path: "/persons",
      tags,
      summary: "Create a person and its client certificate (admins only)",
      request: { body: jsonBody(PersonRequest) },
      responses: responses(PersonIdentity),
    }),
    async (c) => {
      const { db, authority } = c.get("services");
      return c.json(await createPerson(db, authority, actorOf(c), c.req.valid("json")), 200);
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/persons/{personId}",
      tags,
      summary:
        "Revoke a person (admins only, not oneself): their certificates and unused registration tokens stop working; their computers and instances stay for an admin to act on",
      request: { params: PersonParams },
      responses: responses(z.object({ ok: z.literal(true) })),
    }),
    async (c) => {
      await revokePerson(c.get("services").db, actorOf(c), c.req.valid("param").personId);
      return c.json({ ok: true as const }, 200);
    },
  )
  .openapi(
    createRoute({
      method: "post",
      path: "/registration-tokens",
      tags,
      summary: "A one-time token to register a new node (or re-register computerId on a new host)",
      request: { body: jsonBody(TokenRequest) },
      responses: responses(Token),
    }),
    async (c) =>
      c.json(await createRegistrationToken(c.get("services").db, actorOf(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/persons/{personId}/bill",
      tags,
      summary: "What a person owes for a period: partition-hours x agreed price, with reported usage",
      request: {
        params: PersonParams,
        query: z.object({
          from: z.string().datetime({ offset: true }),
          to: z.string().datetime({ offset: true }),
        }),
      },
      responses: responses(Bill),
    }),
    async (c) => {
      const { from, to } = c.req.valid("query");
      return c.json(
        await computeBill(
          c.get("services").db,
          actorOf(c),
          c.req.valid("param").personId,
          new Date(from),
          new Date(to),
        ),
        200,
      );
    },
  );
