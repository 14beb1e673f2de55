import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { describeWith, requires } from "../support/requirements.js";

const COMPUTER = "COMP-NODE";

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI: its `slapos node` commands")],
  "the real `slapos node format` against our master",
  () => {
    let directory: string;
    let master: RunningMaster;
    let client: MasterClient;
    // Definition mode, without user or network changes; the public-IPv4 lookup, which would
    // reach the internet, is replaced before the CLI runs (reference section 12.3).
    const format = () =>
      execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [
          "-c",
          "import slapos.format as f; f.getPublicIPv4Address = lambda: None; from slapos.cli.entry import main; main()",
          "node",
          "format",
          "--cfg",
          join(directory, "slapos.cfg"),
          "--now",
        ],
        { reject: false, all: true, cwd: directory, env: { HOME: directory } },
      );

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slapos-node-"));
      master = await startMaster({
        dataDir: join(directory, "master"),
        insecureHttp: true,
        logger: pino({ level: "silent" }),
      });
      client = new MasterClient({ url: master.url });
      await mkdir(join(directory, "opt/slapgrid"), { recursive: true });
      await mkdir(join(directory, "srv/slapgrid"), { recursive: true });
      await writeFile(
        join(directory, "slapos.cfg"),
        [
          "[slapos]",
          `computer_id = ${COMPUTER}`,
          `master_url = ${master.url}`,
          `software_root = ${directory}/opt/slapgrid`,
          `instance_root = ${directory}/srv/slapgrid`,
          "root_check = false",
          "[slapformat]",
          `input_definition_file = ${directory}/definition.cfg`,
          `computer_xml = ${directory}/slapos.xml`,
          "partition_amount = 2",
          "alter_user = false",
          "alter_network = false",
          "create_tap = false",
          "create_tun = false",
          "partition_has_ipv6_range = false",
          "",
        ].join("\n"),
      );
      const partitions = [0, 1].flatMap((index) => [
        `[partition_${index}]`,
        `address = 10.0.0.${10 + index}/255.255.255.255 fd00:1234::${10 + index}/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`,
        `pathname = slappart${index}`,
        "user = nobody",
        "network_interface =",
      ]);
      await writeFile(
        join(directory, "definition.cfg"),
        ["[computer]", "address = 10.0.0.1/255.255.255.255", ...partitions, ""].join("\n"),
      );
    });
    afterAll(async () => {
      await client?.close();
      await master?.close();
      await rm(directory, { recursive: true, force: true });
    });

    it("registers the node's partitions and their addresses, and a re-run changes nothing", async () => {
      const first = await format();
      expect(first.exitCode, first.all).toBe(0);
      const computer = await client.getComputer(COMPUTER);
      expect(
        computer.partitions.map((partition) => [
          partition.reference,
          partition.addresses.map((a) => a.address),
        ]),
      ).toEqual([
        ["slappart0", ["10.0.0.10", "fd00:1234::10"]],
        ["slappart1", ["10.0.0.11", "fd00:1234::11"]],
      ]);
      const again = await format();
      expect(again.exitCode, again.all).toBe(0);
      expect((await client.getComputer(COMPUTER)).desiredVersion).toBe(computer.desiredVersion);
    });
  },
);
