import type { MiddlewareHandler } from "hono";
import type { MasterEnv } from "./context.js";
import { errorResponse } from "./errors.js";

/** Deeper JSON than any body of the API (which nests at most 4 levels) could need. */
export const MAX_JSON_DEPTH = 64;

/**
 * Why a JSON text is refused, found in one pass over the raw text with no recursion and no
 * parse, stopping at the first fault: a NUL (raw or `\u0000`, which Postgres text and jsonb
 * cannot hold) or nesting deeper than MAX_JSON_DEPTH (which would cost every later walk of the
 * value a stack frame per level). Malformed JSON is left for the validator to describe.
 */
export function jsonFault(text: string): string | undefined {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code === 0) return "the body contains a NUL character";
    if (inString) {
      if (code === 0x5c) {
        // `\\` escapes the backslash itself, so `\\u0000` is text, not a NUL: skip what is escaped.
        if (text.startsWith("u0000", index + 1)) {
          return "strings in the body may not contain NUL characters (\\u0000): remove them";
        }
        index += 1;
      } else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      depth += 1;
      if (depth > MAX_JSON_DEPTH)
        return `the body nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`;
    } else if (code === 0x5d || code === 0x7d) depth -= 1;
  }
  return undefined;
}

/**
 * Refuses with a 400, before any route (and authentication) does work on them, NULs in the URL
 * and JSON bodies that hold NULs or nest too deep. SLAP form fields are checked where they are
 * read (master/slap/form.ts).
 */
export const refuseHostileInput: MiddlewareHandler<MasterEnv> = async (c, next) => {
  let url: string;
  try {
    url = decodeURIComponent(c.req.url);
  } catch {
    return errorResponse(c, 400, "invalid", "the URL has a malformed percent-encoding");
  }
  if (url.includes("\0")) return errorResponse(c, 400, "invalid", "the URL contains a NUL character");
  if (c.req.header("content-type")?.includes("json")) {
    const fault = jsonFault(await c.req.text()); // cached: the validators read it again
    if (fault) return errorResponse(c, 400, "invalid", fault, "body");
  }
  return next();
};
