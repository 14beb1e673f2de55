import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { describeWith, requires } from "../support/requirements.js";

const COMPUTER = "COMP-NODE";
const RELEASE = resolve("examples/software/hello-cookbook/software.cfg");
// Loopback addresses, so that the instance's service can bind them without network changes.
const PARTITION_IPV4 = ["127.0.0.10", "127.0.0.11"];
// slapgrid refuses to run buildout as root, so as root the node side runs as this user
// (reference section 12.3); otherwise as the user running the tests.
const NODE_USER = "nobody";
const asRoot = process.getuid?.() === 0;

async function freePort(host: string): Promise<number> {
  const server = createServer();
  await new Promise<void>((listening) => server.listen(0, host, listening));
  const address = server.address();
  await new Promise((closed) => server.close(closed));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core from PyPI: its `slapos node` commands")],
  "the real slapos node (format, software, instance, report) against our master",
  () => {
    let directory: string;
    let master: RunningMaster;
    let client: MasterClient;
    const python = () => `${process.env.SLAPOS_VENV}/bin/python`;
    const config = () => join(directory, "slapos.cfg");

    /** A `slapos` CLI command, as the node user for `node` commands when we are root. */
    const slapos = (args: string[], options: { asNodeUser?: boolean } = {}) => {
      const command = [`${process.env.SLAPOS_VENV}/bin/slapos`, ...args, "--cfg", config()];
      const [file, ...rest] =
        options.asNodeUser && asRoot ? ["runuser", "-u", NODE_USER, "--", ...command] : command;
      return execa(file ?? "", rest, { reject: false, all: true, cwd: directory, env: { HOME: directory } });
    };
    const node = (...args: string[]) => slapos(["node", ...args, "--now"], { asNodeUser: true });
    // Definition mode, without user or network changes; the public-IPv4 lookup, which would
    // reach the internet, is replaced before the CLI runs (reference section 12.3).
    const format = () =>
      execa(
        python(),
        [
          "-c",
          "import slapos.format as f; f.getPublicIPv4Address = lambda: None; from slapos.cli.entry import main; main()",
          "node",
          "format",
          "--cfg",
          config(),
          "--now",
        ],
        { reject: false, all: true, cwd: directory, env: { HOME: directory } },
      );
    const supervisorStatus = async () =>
      (
        await execa(
          `${process.env.SLAPOS_VENV}/bin/supervisorctl`,
          ["-c", join(directory, "srv/slapgrid/etc/supervisord.conf"), "status"],
          { reject: false, all: true },
        )
      ).all ?? "";
    /** The PID of the partition's web server when supervisord runs it. */
    const serverPid = async () =>
      /^slappart0:http-server-on-watch\s+RUNNING\s+pid (\d+)/m.exec(await supervisorStatus())?.[1];
    const instanceOf = async (title: string) => {
      const instance = (await client.listInstances()).find((candidate) => candidate.title === title);
      if (!instance) throw new Error(`no instance ${title}`);
      return instance;
    };

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slapos-node-"));
      await chmod(directory, 0o755);
      master = await startMaster({
        dataDir: join(directory, "master"),
        insecureHttp: true,
        logger: pino({ level: "silent" }),
      });
      client = new MasterClient({ url: master.url });
      for (const path of ["opt/slapgrid", "srv/slapgrid", "run"]) {
        await mkdir(join(directory, path), { recursive: true });
      }
      await writeFile(
        config(),
        [
          "[slapos]",
          `computer_id = ${COMPUTER}`,
          `master_url = ${master.url}`,
          `software_root = ${directory}/opt/slapgrid`,
          `instance_root = ${directory}/srv/slapgrid`,
          "root_check = false",
          ...["software", "instance", "report"].map(
            (kind) => `pidfile_${kind} = ${directory}/run/${kind}.pid`,
          ),
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
      const partitions = PARTITION_IPV4.flatMap((ipv4, index) => [
        `[partition_${index}]`,
        `address = ${ipv4}/255.255.255.255 fd00:1234::${10 + index}/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff`,
        `pathname = slappart${index}`,
        `user = ${NODE_USER}`,
        "network_interface =",
      ]);
      await writeFile(
        join(directory, "definition.cfg"),
        ["[computer]", "address = 127.0.0.9/255.255.255.255", ...partitions, ""].join("\n"),
      );
    });
    afterAll(async () => {
      // The node leaves its supervisord running; stop it so no process outlives the test.
      const pid = await readFile(join(directory, "srv/slapgrid/var/run/supervisord.pid"), "utf8").catch(
        () => "",
      );
      if (pid.trim()) {
        try {
          process.kill(Number(pid.trim()), "SIGTERM");
        } catch {}
        for (let attempt = 0; attempt < 50; attempt += 1) {
          try {
            process.kill(Number(pid.trim()), 0);
            await new Promise((wait) => setTimeout(wait, 100));
          } catch {
            break;
          }
        }
      }
      await client?.close();
      await master?.close();
      await rm(directory, { recursive: true, force: true });
    });

    it("format registers the node's partitions and their addresses, and a re-run changes nothing", async () => {
      const first = await format();
      expect(first.exitCode, first.all).toBe(0);
      const computer = await client.getComputer(COMPUTER);
      expect(
        computer.partitions.map((partition) => [
          partition.reference,
          partition.addresses.map((a) => a.address),
        ]),
      ).toEqual([
        ["slappart0", ["127.0.0.10", "fd00:1234::10"]],
        ["slappart1", ["127.0.0.11", "fd00:1234::11"]],
      ]);
      const again = await format();
      expect(again.exitCode, again.all).toBe(0);
      expect((await client.getComputer(COMPUTER)).desiredVersion).toBe(computer.desiredVersion);
      if (asRoot) {
        // With alter_user = false format chowns nothing; the node user must own what it runs.
        await execa("chown", [
          "-R",
          `${NODE_USER}:nogroup`,
          ...["opt", "srv", "run"].map((d) => join(directory, d)),
        ]);
      }
    });

    it("software builds the supplied release and reports it available", async () => {
      const supply = await slapos(["supply", RELEASE, COMPUTER]);
      expect(supply.exitCode, supply.all).toBe(0);
      const run = await node("software");
      expect(run.exitCode, run.all).toBe(0);
      const [software] = (await client.getComputer(COMPUTER)).software;
      expect(software).toMatchObject({
        url: RELEASE,
        requestedState: "available",
        reportedState: "available",
      });
      const [installed] = await readdir(join(directory, "opt/slapgrid"));
      await access(join(directory, "opt/slapgrid", installed ?? "", ".completed"));
      await access(join(directory, "opt/slapgrid", installed ?? "", "instance.cfg"));
    });

    it("instance deploys a requested instance under supervisord, which publishes its URL through slapos.cookbook:publish", async () => {
      const port = await freePort(PARTITION_IPV4[0] ?? "");
      const request = () =>
        slapos(["request", "hello", RELEASE, "--parameters", `port=${port}`, "greeting=Bonjour"]);
      const first = await request();
      expect(first.exitCode, first.all).toBe(0);
      expect(first.all).not.toContain(`${port}`); // allocated, nothing published yet
      const run = await node("instance");
      expect(run.exitCode, run.all).toBe(0);

      const instance = await instanceOf("hello");
      const url = `http://${PARTITION_IPV4[0]}:${port}/`;
      expect(instance).toMatchObject({
        partitionReference: "slappart0",
        reportedState: "started",
        connectionParameters: { url, greeting: "Bonjour" },
      });
      const page = await fetch(url);
      expect(await page.text()).toBe("Bonjour from hello");

      const pid = await serverPid();
      expect(pid, await supervisorStatus()).toBeDefined();
      const owner = await execa("ps", ["-o", "user=", "-p", pid ?? ""]);
      expect(owner.stdout.trim()).toBe(asRoot ? NODE_USER : (await execa("id", ["-un"])).stdout);

      // The requester sees the published parameters (exit 0 once they are there).
      const again = await request();
      expect(again.exitCode, again.all).toBe(0);
      expect(again.all).toContain(url);
    });

    it("a second instance run leaves an unchanged partition alone", async () => {
      const timestamp = join(directory, "srv/slapgrid/slappart0/.timestamp");
      const before = await readFile(timestamp, "utf8");
      const pid = await serverPid();
      const run = await node("instance");
      expect(run.exitCode, run.all).toBe(0);
      expect(run.all).not.toContain("Installing Computer Partition slappart0");
      expect(await readFile(timestamp, "utf8")).toBe(before);
      expect(await serverPid()).toBe(pid);
    });

    it("instance and report stop and destroy an instance requested destroyed, and free its partition", async () => {
      const destroy = await slapos(["request", "hello", RELEASE, "--state", "destroyed"]);
      expect([0, 2], destroy.all).toContain(destroy.exitCode);
      const stop = await node("instance");
      expect(stop.exitCode, stop.all).toBe(0);
      expect(await supervisorStatus()).not.toContain("slappart0:http-server-on-watch");

      const report = await node("report");
      expect(report.exitCode, report.all).toBe(0);
      expect(await instanceOf("hello")).toMatchObject({ status: "destroyed", partitionReference: null });
      const [partition] = (await client.getComputer(COMPUTER)).partitions;
      expect(partition).toMatchObject({ reference: "slappart0", state: "free", instanceId: null });
      expect(await readdir(join(directory, "srv/slapgrid/slappart0"))).toEqual([]);
    });

    it("software removes a release whose supply was withdrawn", async () => {
      const remove = await slapos(["remove", RELEASE, COMPUTER]);
      expect(remove.exitCode, remove.all).toBe(0);
      const run = await node("software");
      expect(run.exitCode, run.all).toBe(0);
      expect(await readdir(join(directory, "opt/slapgrid"))).toEqual([]);
      expect((await client.getComputer(COMPUTER)).software).toEqual([]);
    });
  },
);
