import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { describeWith, requires } from "../support/requirements.js";

const RELEASE = "https://example.com/software/web/software.cfg";

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI, the interop peer")],
  "the real slap library over HTTPS with client certificates",
  () => {
    let dataDir: string;
    let master: RunningMaster;

    beforeAll(async () => {
      dataDir = await mkdtemp(join(tmpdir(), "slap-tls-"));
      master = await startMaster({ dataDir, logger: pino({ level: "silent" }) });
    });
    afterAll(async () => {
      await master?.close();
      await rm(dataDir, { recursive: true, force: true });
    });

    it("lets each identity do its own part and nothing else", async () => {
      const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
      const admin = new MasterClient(config);
      const keys = join(dataDir, "keys");
      await execa("mkdir", ["-m", "700", keys]);
      await writeFile(join(keys, "person.crt"), config.certificate);
      await writeFile(join(keys, "person.key"), config.key);
      const computers: string[] = [];
      for (const name of ["computer", "other-computer"]) {
        const registration = await admin.register((await admin.createRegistrationToken()).token, name);
        await writeFile(join(keys, `${name}.crt`), registration.certificate);
        await writeFile(join(keys, `${name}.key`), registration.privateKey);
        computers.push(registration.computerId);
      }
      await admin.close();

      const run = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [join(import.meta.dirname, "slap_tls_scenario.py"), master.url, RELEASE, keys, ...computers],
        { reject: false },
      );
      expect(run.exitCode, run.stderr).toBe(0);
      const seen = JSON.parse(run.stdout);
      expect(seen.format).toBe("done");
      expect(seen.format_other_computer).toMatch(/403/);
      expect(seen.root).toBe("slappart0");
      expect(seen.other_computer_reads).toMatch(/403/);
      expect(seen.anonymous_reads).toMatch(/401/);
      expect(seen.child).toBe("slappart1");
      expect(seen.connection).toEqual({ url: "https://[fd00::10]/" });
      expect(seen.instance_as_node).toMatch(/403/);
    });
  },
);
