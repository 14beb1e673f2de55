import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { OrganisationMemberSettings, OrganisationRequest, OrganisationView } from "../../../protocol/api.js";
import {
  createOrganisation,
  getOrganisation,
  listOrganisations,
  removeOrganisationMember,
  setOrganisationMember,
} from "../../model/organisations.js";
import type { MasterEnv } from "../context.js";
import { validationHook } from "../errors.js";
import { actorOf } from "../identity.js";
import { jsonBody, responses } from "../route.js";

const tags = ["organisations"];

const OrganisationParams = z.object({ organisationId: z.string().min(1).max(100) });
const MemberParams = OrganisationParams.extend({ personId: z.string().min(1).max(100) });

export const organisationRoutes = new OpenAPIHono<MasterEnv>({ defaultHook: validationHook })
  .openapi(
    createRoute({
      method: "post",
      path: "/organisations",
      tags,
      summary: "Create an organisation; you become its first manager",
      request: { body: jsonBody(OrganisationRequest) },
      responses: responses(OrganisationView),
    }),
    async (c) => c.json(await createOrganisation(c.get("services").db, actorOf(c), c.req.valid("json")), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/organisations",
      tags,
      summary: "The organisations you belong to, with their members",
      responses: responses(z.array(OrganisationView)),
    }),
    async (c) => c.json(await listOrganisations(c.get("services").db, actorOf(c)), 200),
  )
  .openapi(
    createRoute({
      method: "get",
      path: "/organisations/{organisationId}",
      tags,
      summary: "An organisation with its members (members and admins only)",
      request: { params: OrganisationParams },
      responses: responses(OrganisationView),
    }),
    async (c) =>
      c.json(
        await getOrganisation(c.get("services").db, actorOf(c), c.req.valid("param").organisationId),
        200,
      ),
  )
  .openapi(
    createRoute({
      method: "put",
      path: "/organisations/{organisationId}/members/{personId}",
      tags,
      summary:
        "Add a person to an organisation or change their role (managers and admins only; the last manager stays a manager)",
      request: { params: MemberParams, body: jsonBody(OrganisationMemberSettings) },
      responses: responses(OrganisationView),
    }),
    async (c) => {
      const { organisationId, personId } = c.req.valid("param");
      return c.json(
        await setOrganisationMember(
          c.get("services").db,
          actorOf(c),
          organisationId,
          personId,
          c.req.valid("json").role,
        ),
        200,
      );
    },
  )
  .openapi(
    createRoute({
      method: "delete",
      path: "/organisations/{organisationId}/members/{personId}",
      tags,
      summary:
        "Remove a member (managers and admins), or leave (yourself); the last manager cannot go. Their instances already placed stay.",
      request: { params: MemberParams },
      responses: responses(z.object({ ok: z.literal(true) })),
    }),
    async (c) => {
      const { organisationId, personId } = c.req.valid("param");
      await removeOrganisationMember(c.get("services").db, actorOf(c), organisationId, personId);
      return c.json({ ok: true as const }, 200);
    },
  );
