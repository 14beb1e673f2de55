import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { expect, it } from "vitest";
import { parseNodeConfig } from "../../slave/config.js";
import { buildoutTail } from "../../slave/instance/buildout-profile.js";
import type { LocalPartition } from "../../slave/partitions.js";
import { describeWith, requires } from "../support/requirements.js";

// A requester chooses parameters and titles: whatever line breaks they hold, zc.buildout's own
// parser must read them back as the values they are, never as sections or options of their own.

const BREAKS = ["\r", "\n", "\r\n", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029"];

const partition: LocalPartition = {
  reference: "slappart0",
  index: 0,
  path: "/srv/slapgrid/slappart0",
  user: { name: "slapuser0", uid: 1000, gid: 1000 },
  addresses: [{ address: "10.0.0.1", netmask: "255.255.255.0" }],
  tap: null,
};

describeWith(
  [requires.env("SLAPOS_VENV", "zc.buildout's parser")],
  "values written into buildout.cfg",
  () => {
    it("keeps every kind of line break inside its value", async () => {
      const parameters = Object.fromEntries(
        BREAKS.map((mark, index) => [`p${index}`, `x${mark}[buildout]${mark}offline = false${mark}evil = 1`]),
      );
      const config = parseNodeConfig(
        "[slapos]\nmaster_url = https://master.invalid\ncomputer_id = COMP-1\n",
        "/etc/opt/slapos/slapos.cfg",
      );
      const tail = buildoutTail(
        config,
        partition,
        {
          id: "i1",
          title: "t\r[evil]\rx = 1",
          rootTitle: "root",
          softwareReleaseUrl: "https://example.invalid/software.cfg",
          softwareType: "default",
          requestedState: "started",
          parameters,
          sharedInstances: [],
          timestamp: 1,
        } as never,
        { certFile: "/c", keyFile: "/k" },
        {},
      );
      const directory = await mkdtemp(join(tmpdir(), "profile-"));
      try {
        await writeFile(join(directory, "buildout.cfg"), tail);
        const parsed = await execa(`${process.env.SLAPOS_VENV}/bin/python`, [
          "-c",
          "import json, sys, zc.buildout.configparser as c; print(json.dumps(c.parse(open(sys.argv[1]), sys.argv[1])))",
          join(directory, "buildout.cfg"),
        ]);
        const sections = JSON.parse(parsed.stdout) as Record<string, Record<string, string>>;
        expect(Object.keys(sections).sort()).toEqual([
          "buildout",
          "slap-connection",
          "slap-instance",
          "slap_connection",
        ]);
        expect(sections.buildout?.offline).toBe("true");
        const instance = sections["slap-instance"] ?? {};
        expect(
          Object.keys(instance).filter((key) => key === "evil" || key === "x" || key === "offline"),
        ).toEqual([]);
        for (const index of BREAKS.keys()) {
          expect(instance[`configuration.p${index}`]).toBe("x\n[buildout]\noffline = false\nevil = 1");
        }
      } finally {
        await rm(directory, { recursive: true, force: true });
      }
    });
  },
);
