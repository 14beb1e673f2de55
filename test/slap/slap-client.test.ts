import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { describeWith, requires } from "../support/requirements.js";

const RELEASE = "https://example.com/software/web/software.cfg";

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI, the interop peer")],
  "the real slapos.core slap library against our master",
  () => {
    let dataDir: string;
    let master: RunningMaster;

    beforeAll(async () => {
      dataDir = await mkdtemp(join(tmpdir(), "slap-interop-"));
      master = await startMaster({ dataDir, insecureHttp: true, logger: pino({ level: "silent" }) });
    });
    afterAll(async () => {
      await master?.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    it("registers, supplies, requests (instance, child, shared), publishes, reads back, bangs and destroys", async () => {
      const run = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [join(import.meta.dirname, "slap_client_scenario.py"), master.url, RELEASE, "COMP-INTEROP"],
        { reject: false },
      );
      expect(run.exitCode, run.stderr).toBe(0);
      const seen = JSON.parse(run.stdout);
      expect(seen.format).toBe("done");
      expect(seen.root).toMatchObject({
        id: "slappart0",
        guid: expect.stringMatching(/^SOFTINST-/),
        state: "started",
        parameters: { name: "blog", port: "8080" },
      });
      expect(seen.software).toEqual([[RELEASE, "available"]]);
      expect(seen.partition.state).toBe("started");
      expect(seen.partition.parameters).toMatchObject({
        name: "blog",
        port: "8080",
        instance_title: "root",
        root_instance_title: "root",
        slap_computer_id: "COMP-INTEROP",
        slap_computer_partition_id: "slappart0",
        slap_software_release_url: RELEASE,
        slap_software_type: "default",
        ip_list: [
          ["slaptap0", "10.0.0.10"],
          ["slaptap0", "fd00::10"],
        ],
      });
      expect(seen.partition.free).toEqual(["slappart1", "slappart2"]);
      expect(seen.child).toMatchObject({ id: "slappart1", guid: expect.stringMatching(/^SOFTINST-/) });
      expect(seen.shared.host).toBe("slappart0");
      expect(seen.connection).toEqual({ url: "http://[fd00::10]:8080/", note: "a&b<c>" });
      expect(seen.same_guid).toBe(true);
      expect(seen.slave_instance_list).toEqual([
        { domain: "example.test", slap_software_type: "default", slave_title: "my-site" },
      ]);
      expect(seen.shared_connection).toEqual({ "site-url": "https://example.test/" });
      expect(seen.destroy_requested).toEqual({ root: "destroyed", child: "destroyed" });
      expect(seen.after_destroy).toEqual(["slappart0", "slappart1", "slappart2"]);
      expect(seen.bad_sla).not.toBe("accepted");
    });
  },
);
