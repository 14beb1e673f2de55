import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startSlapproxy } from "../../bench/slapproxy.js";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { describeWith, requires } from "../support/requirements.js";

// The same sequence of SLAP calls, through the real slap library, against the real slapproxy
// and against our master. Ids and timestamps are left out by the script; every other difference
// must be one of those declared below, each on purpose.

type Steps = Record<string, { ok?: unknown; error?: string }>;
const RELEASE = "https://example.com/software/web/software.cfg";
const COMPUTER = "COMP-DIFF";

async function record(venv: string, url: string): Promise<Steps> {
  const run = await execa(
    `${venv}/bin/python`,
    [join(import.meta.dirname, "slap_differential.py"), url, RELEASE, COMPUTER],
    {
      reject: false,
    },
  );
  if (run.exitCode !== 0) throw new Error(run.stderr);
  return JSON.parse(run.stdout);
}

/** What our master answers, derived from slapproxy's answers and the differences we chose. */
function expectedFromSlapproxy(proxy: Steps): Steps {
  const expected = structuredClone(proxy);
  const walk = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    if (value && typeof value === "object") {
      const result: Record<string, unknown> = {};
      for (const [key, entry] of Object.entries(value)) {
        // slapproxy quirk: a literal placeholder string, never a URL.
        if (key === "slap_server_url") continue;
        // slapproxy quirk: it sends `full_address_list`; the real master sends `full_ip_list`.
        if (key === "full_address_list") {
          result.full_ip_list = walk(entry);
          continue;
        }
        // slapproxy quirk: shared titles are built as "<root title>_<title>"; ours keep their title.
        if (key === "slave_title" && typeof entry === "string") {
          result[key] = entry.replace(/^root_/, "");
          continue;
        }
        result[key] = walk(entry);
      }
      return result;
    }
    return value;
  };
  for (const name of Object.keys(expected)) expected[name] = walk(expected[name]) as Steps[string];
  return expected;
}

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI: slapproxy and the slap library")],
  "the same SLAP calls against slapproxy and against our master",
  () => {
    const venv = process.env.SLAPOS_VENV ?? "";
    let directory: string;
    let master: RunningMaster;
    let proxy: Steps;
    let ours: Steps;

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-differential-"));
      const port = 20_000 + Math.floor(Math.random() * 20_000);
      const slapproxy = (await startSlapproxy(venv, directory, port, COMPUTER)).child;
      try {
        proxy = await record(venv, `http://127.0.0.1:${port}/`);
      } finally {
        slapproxy.kill("SIGTERM");
        await slapproxy;
      }
      master = await startMaster({
        dataDir: join(directory, "master"),
        insecureHttp: true,
        logger: pino({ level: "silent" }),
      });
      ours = await record(venv, master.url);
    });
    afterAll(async () => {
      await master?.close();
      await rm(directory, { recursive: true, force: true });
    });

    it("answers like slapproxy, apart from the declared differences", () => {
      const expected = expectedFromSlapproxy(proxy);
      // Differences on purpose, checked explicitly rather than erased:
      // 1. No free partition: slapproxy refuses (404), ours accepts and places the instance when
      //    capacity appears (408, "not ready yet", as the real master answers).
      expect(proxy.no_room).toEqual({ error: "NotFoundError" });
      expect(ours.no_room?.ok).toMatchObject({
        _partition_id: null,
        _request_dict: { partition_reference: "third" },
      });
      // 2. Unknown computer: slapproxy fails with a 500; ours answers 404.
      expect(proxy.unknown_computer).toEqual({ error: "HTTPError" });
      expect(ours.unknown_computer).toEqual({ error: "NotFoundError" });
      // 3. Destroying a root: slapproxy reaches the children only when the node reports the root
      //    destroyed; ours requests the whole tree destroyed at once (one node pass fewer), and
      //    the tree's shared instances leave their host's list.
      const proxyView = proxy.view_destroy_requested?.ok as { partitions: Record<string, { state: string }> };
      const ourView = ours.view_destroy_requested?.ok as {
        partitions: Record<string, { state: string; parameters: { slave_instance_list: unknown[] } }>;
      };
      expect(proxyView.partitions.slappart1?.state).toBe("started");
      expect(ourView.partitions.slappart1?.state).toBe("destroyed");
      expect(ourView.partitions.slappart0?.parameters.slave_instance_list).toEqual([]);
      // 4. Room appearing: slapproxy forgets the refused request; ours places the request that
      //    waited ("third", difference 1) in the partition the destruction freed.
      const afterProxy = proxy.view_after_destruction?.ok as {
        partitions: Record<string, { state: string }>;
      };
      const afterOurs = ours.view_after_destruction?.ok as {
        partitions: Record<string, { state: string; parameters: { instance_title: string } }>;
      };
      expect(afterProxy.partitions.slappart1?.state).toBe("destroyed");
      expect(afterOurs.partitions.slappart1).toMatchObject({
        state: "started",
        parameters: { instance_title: "third" },
      });
      expect(afterOurs.partitions.slappart0).toEqual(afterProxy.partitions.slappart0);

      for (const name of [
        "no_room",
        "unknown_computer",
        "view_destroy_requested",
        "view_after_destruction",
      ]) {
        delete expected[name];
        delete ours[name];
      }
      expect(Object.keys(ours).sort()).toEqual(Object.keys(expected).sort());
      for (const name of Object.keys(expected)) expect(ours[name], name).toEqual(expected[name]);
    });
  },
);
