import type { MiddlewareHandler } from "hono";
import type { MasterEnv } from "./context.js";
import { errorResponse } from "./errors.js";

function containsNul(value: unknown): boolean {
  if (typeof value === "string") return value.includes("\0");
  if (Array.isArray(value)) return value.some(containsNul);
  if (value && typeof value === "object") {
    return Object.entries(value).some(([key, entry]) => key.includes("\0") || containsNul(entry));
  }
  return false;
}

/**
 * Postgres text and jsonb cannot hold NUL characters: refuse them up front with a 400 rather
 * than fail in the database with a 500.
 */
export const rejectNul: MiddlewareHandler<MasterEnv> = async (c, next) => {
  let url: string;
  try {
    url = decodeURIComponent(c.req.url);
  } catch {
    return errorResponse(c, 400, "invalid", "the URL has a malformed percent-encoding");
  }
  if (url.includes("\0")) return errorResponse(c, 400, "invalid", "the URL contains a NUL character");
  if (c.req.header("content-type")?.includes("json")) {
    const text = await c.req.text(); // cached: the validators read it again
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return next(); // the validator answers malformed JSON
    }
    if (containsNul(body))
      return errorResponse(c, 400, "invalid", "strings in the body may not contain NUL characters");
  }
  return next();
};
