import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { z } from "zod";
import type { ErrorBody } from "../../protocol/api.js";
import { ModelError, type ModelErrorKind } from "../model/errors.js";
import type { MasterEnv } from "./context.js";
import { loggableError } from "./log-error.js";

type ErrorKind = z.infer<typeof ErrorBody>["error"]["kind"];

const STATUS: Record<ModelErrorKind, ContentfulStatusCode> = {
  invalid: 400,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  not_ready: 408,
};

export function errorResponse(
  c: Context,
  status: ContentfulStatusCode,
  kind: ErrorKind,
  message: string,
  field?: string,
) {
  return c.json({ error: { kind, message, ...(field ? { field } : {}) } }, status);
}

/** Every failure becomes a JSON error naming what was wrong; only real faults are 500 (and logged). */
export function handleError(error: Error, c: Context<MasterEnv>) {
  if (error instanceof ModelError)
    return errorResponse(c, STATUS[error.kind], error.kind, error.message, error.field);
  if (error instanceof HTTPException) {
    if (error.status === 413) return errorResponse(c, 413, "too_large", "the request body is too large");
    if (error.status === 400) return errorResponse(c, 400, "invalid", error.message || "malformed request");
    return errorResponse(c, error.status as ContentfulStatusCode, "invalid", error.message);
  }
  c.get("services")?.logger.error({ error: loggableError(error), path: c.req.path }, "request failed");
  return c.json({ error: { kind: "internal", message: "internal error; see the master's log" } }, 500);
}

/** zod validation failures: 400, naming the first bad field (`body.title`, `query.wait`...). */
export function validationHook(
  result: {
    success: boolean;
    error?: { issues: { path: PropertyKey[]; message: string }[] };
    target?: string;
  },
  c: Context,
) {
  if (result.success) return;
  const issue = result.error?.issues[0];
  const path = issue?.path.map(String).join(".") ?? "";
  const field = [result.target === "json" ? "body" : result.target, path].filter(Boolean).join(".");
  return errorResponse(c, 400, "invalid", `${field || "request"}: ${issue?.message ?? "invalid"}`, field);
}
