import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";

const RELEASE = "https://example.com/software/web/software.cfg";

// `--insecure-http` makes every caller the admin: only local programs may call, not the web
// pages the operator's browser opens (form posts to loopback, DNS rebinding).
describe("a master in insecure mode", () => {
  let dataDir: string;
  let master: RunningMaster;
  let port: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "slap-insecure-"));
    master = await startMaster({ dataDir, insecureHttp: true, logger: pino({ level: "silent" }) });
    port = new URL(master.url).port;
  });
  afterAll(async () => {
    await master?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** A form post to the SLAP API that would request an instance as the admin. */
  const requestInstanceForm = (title: string, headers: Record<string, string>) =>
    request(new URL("requestComputerPartition", master.url), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams({ partition_reference: title, software_release: RELEASE }).toString(),
    });
  const listComputers = (headers: Record<string, string>) =>
    request(new URL("api/v1/computers", master.url), { headers });
  const titles = async () => {
    const client = new MasterClient({ url: master.url });
    try {
      return (await client.listInstances()).map((instance) => instance.title);
    } finally {
      await client.close();
    }
  };

  it("refuses a form a page on another site posts, and requests nothing", async () => {
    const answer = await requestInstanceForm("from-evil", {
      origin: "http://evil.example",
      "sec-fetch-site": "cross-site",
    });
    expect(answer.statusCode).toBe(403);
    expect(((await answer.body.json()) as { error: { message: string } }).error.message).toContain(
      "refuses requests a browser makes for another site",
    );
    expect(await titles()).not.toContain("from-evil");
  });

  it("refuses a request from a foreign origin, or that the browser calls cross-site", async () => {
    const refused: Record<string, string>[] = [
      { origin: "http://evil.example" },
      { origin: "null" },
      { origin: "http://127.0.0.1.evil.example" },
      { origin: "http://sub.evil.example", "sec-fetch-site": "same-site" },
      { "sec-fetch-site": "cross-site" },
      { origin: `http://127.0.0.1:${port}`, "sec-fetch-site": "cross-site" },
    ];
    for (const headers of refused) {
      const answer = await listComputers(headers);
      expect(answer.statusCode, JSON.stringify(headers)).toBe(403);
      await answer.body.dump();
    }
  });

  it("refuses a Host that is not loopback (a rebound DNS name)", async () => {
    for (const host of [
      "evil.example",
      `evil.example:${port}`,
      `127.0.0.1.evil.example:${port}`,
      `localhost.evil.example`,
    ]) {
      const answer = await listComputers({ host });
      expect(answer.statusCode, host).toBe(403);
      expect(((await answer.body.json()) as { error: { message: string } }).error.message).toContain(
        "answers only requests addressed to 127.0.0.1, [::1] or localhost",
      );
    }
  });

  it("answers programs (no Origin, no Sec-Fetch-Site) on every loopback name, and loopback pages", async () => {
    const accepted: Record<string, string>[] = [
      {},
      { host: "127.0.0.1" },
      { host: "localhost" },
      { host: `localhost:${port}` },
      { host: `[::1]:${port}` },
      { host: "[::1]" },
      { origin: `http://127.0.0.1:${port}`, "sec-fetch-site": "same-origin" },
      { origin: "http://localhost:3000", "sec-fetch-site": "same-site" },
      { "sec-fetch-site": "none" },
    ];
    for (const headers of accepted) {
      const answer = await listComputers(headers);
      expect(answer.statusCode, JSON.stringify(headers)).toBe(200);
      await answer.body.dump();
    }
    const posted = await requestInstanceForm("from-curl", {});
    expect([200, 408]).toContain(posted.statusCode);
    await posted.body.dump();
    expect(await titles()).toContain("from-curl");
  });
});
