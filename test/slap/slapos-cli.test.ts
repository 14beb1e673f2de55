import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { describeWith, requires } from "../support/requirements.js";

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI: its `slapos` command")],
  "the real `slapos supply` and `slapos request` commands against our master",
  () => {
    let directory: string;
    let master: RunningMaster;
    let client: MasterClient;
    let config: string;
    let computerId: string;
    // A local path: the client looks for software.cfg.json beside it, and reaches no network.
    let release: string;
    const slapos = (...args: string[]) =>
      execa(`${process.env.SLAPOS_VENV}/bin/slapos`, args, {
        reject: false,
        all: true,
        env: { HOME: directory },
      });

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slapos-cli-"));
      master = await startMaster({
        dataDir: join(directory, "master"),
        insecureHttp: true,
        logger: pino({ level: "silent" }),
      });
      client = new MasterClient({ url: master.url });
      ({ computerId } = await client.register((await client.createRegistrationToken()).token, "cli-node"));
      await client.uploadPartitions(computerId, [
        { reference: "slappart0", addresses: [{ interface: "eth0", address: "fd00::7", netmask: "64" }] },
      ]);
      release = join(directory, "software.cfg");
      await writeFile(release, "[buildout]\nparts =\n");
      config = join(directory, "slapos-client.cfg");
      await writeFile(config, `[slapos]\nmaster_url = ${master.url}\n`);
    });
    afterAll(async () => {
      await client?.close();
      await master?.close();
      await rm(directory, { recursive: true, force: true });
    });

    it("supplies a release to a node", async () => {
      const run = await slapos("supply", release, computerId, "--cfg", config);
      expect(run.exitCode, run.all).toBe(0);
      expect((await client.getComputer(computerId)).software).toEqual([
        { url: release, requestedState: "available", reportedState: null, errorLog: null },
      ]);
    });

    it("requests an instance, then shows its published connection parameters", async () => {
      const requestBlog = () =>
        slapos(
          "request",
          "--cfg",
          config,
          "blog",
          release,
          "--parameters",
          "name=blog",
          "--node",
          `computer_guid=${computerId}`,
        );
      const first = await requestBlog();
      expect(first.exitCode, first.all).toBe(0);
      const [instance] = await client.listInstances();
      expect(instance).toMatchObject({
        title: "blog",
        parameters: { name: "blog" },
        partitionReference: "slappart0",
      });
      await client.publishConnectionParameters(instance?.id ?? "", { "url-blog": "http://[fd00::7]:8080/" });
      const second = await requestBlog();
      expect(second.exitCode, second.all).toBe(0);
      expect(second.all).toContain("http://[fd00::7]:8080/");
    });

    it("exits 2, 'not ready yet', when no partition is free", async () => {
      const run = await slapos(
        "request",
        "--cfg",
        config,
        "second",
        release,
        "--node",
        `computer_guid=${computerId}`,
      );
      expect(run.exitCode, run.all).toBe(2);
    });
  },
);
