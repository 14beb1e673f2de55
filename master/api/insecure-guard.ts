import type { MiddlewareHandler } from "hono";
import type { MasterEnv } from "./context.js";
import { errorResponse } from "./errors.js";

// In insecure mode every caller is the admin, so the only barrier is "a local program chose to
// call". A web page the operator's browser opens is not that: it can post forms to loopback, and
// a name it controls can be re-pointed at 127.0.0.1 (DNS rebinding). Browsers say where a
// request comes from (Origin, Sec-Fetch-Site); programs such as curl or slapos.core send neither.

const LOOPBACK_HOST = /^(127\.0\.0\.1|\[::1\]|localhost)(:\d{1,5})?$/i;

function isLoopbackOrigin(origin: string): boolean {
  try {
    const url = new URL(origin);
    return (url.protocol === "http:" || url.protocol === "https:") && LOOPBACK_HOST.test(url.host);
  } catch {
    return false; // "null" (sandboxed frames, file: pages) and anything unparsable
  }
}

/** Refuses what a browser sends on behalf of a page that is not on loopback itself. */
export const insecureGuard: MiddlewareHandler<MasterEnv> = async (c, next) => {
  const host = c.req.header("host") ?? "";
  if (!LOOPBACK_HOST.test(host)) {
    return errorResponse(
      c,
      403,
      "forbidden",
      `this master runs with --insecure-http and answers only requests addressed to 127.0.0.1, [::1] or localhost, not to Host '${host.slice(0, 100)}' (a page's own name pointed at this machine)`,
    );
  }
  const origin = c.req.header("origin");
  const site = c.req.header("sec-fetch-site");
  const fromLoopback = origin === undefined || isLoopbackOrigin(origin);
  if (!fromLoopback || site === "cross-site") {
    return errorResponse(
      c,
      403,
      "forbidden",
      `this master runs with --insecure-http, where every caller acts as the admin: it refuses requests a browser makes for another site (Origin ${origin?.slice(0, 100) ?? "absent"}, Sec-Fetch-Site ${site?.slice(0, 20) ?? "absent"}); call it from a program, or from a page on 127.0.0.1/localhost`,
    );
  }
  return next();
};
