import { z } from "@hono/zod-openapi";
import { ErrorBody } from "../../protocol/api.js";

const errorResponses = Object.fromEntries(
  [
    [400, "invalid input, naming the field"],
    [401, "no valid client certificate"],
    [403, "the caller may not do this"],
    [404, "no such object"],
    [409, "refused in the current state"],
    [413, "the request body is too large"],
  ].map(([status, description]) => [
    status,
    { description: String(description), content: { "application/json": { schema: ErrorBody } } },
  ]),
);

/** A route's responses: one success schema, and the error schema for every failure. */
export function responses<Schema extends z.ZodType>(schema: Schema) {
  return {
    200: { description: "success", content: { "application/json": { schema } } },
    ...errorResponses,
  };
}

/** A required JSON request body. */
export function jsonBody<Schema extends z.ZodType>(schema: Schema) {
  return { content: { "application/json": { schema } }, required: true };
}

export const ComputerParams = z.object({ computerId: z.string().min(1).max(100) });
export const PartitionParams = ComputerParams.extend({ reference: z.string().min(1).max(64) });
export const InstanceParams = z.object({ instanceId: z.string().min(1).max(100) });
export const PersonParams = z.object({ personId: z.string().min(1).max(100) });
