import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, execaSync } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type ClientConfig, startMaster } from "../../master/server.js";
import { type Instance, MasterApiError, MasterClient } from "../../protocol/client.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { INSTANCE_ROOT, NodeOnHost, SOFTWARE_ROOT, waitFor } from "../slave/node-on-host.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { hostProcesses } from "../support/node-host.js";
import { describeWith, type Requirement, requires } from "../support/requirements.js";

/** The release as `npm run build` makes it; nodes on test hosts see this machine's path. */
const RELEASE = resolve("dist/master-release/software.cfg");
const DESCRIPTION = resolve("dist/master-release/software.cfg.json");
const POSTGRESQL_RELEASE = resolve("examples/software/postgresql/software.cfg");
const SOFTWARE_PATH = `${SOFTWARE_ROOT}/${createHash("md5").update(RELEASE).digest("hex")}`;
const POSTGRESQL_SOFTWARE_PATH = `${SOFTWARE_ROOT}/${createHash("md5").update(POSTGRESQL_RELEASE).digest("hex")}`;
const SEED_BACKUP = "/srv/seed/backup.json";
const PORT = "8443";
const PEM = /^-----BEGIN CERTIFICATE-----\r?\n[\s\S]+-----END CERTIFICATE-----\r?\n?$/;

/** The postgresql release downloads its server from PyPI's files host, as a real node does. */
const internet: Requirement = {
  why: "this machine's access to https://files.pythonhosted.org (the postgresql release downloads PostgreSQL from PyPI; test hosts reach it through NAT)",
  isMet: () =>
    execaSync("curl", ["-sS", "-o", "/dev/null", "--max-time", "15", "https://files.pythonhosted.org/"], {
      reject: false,
    }).exitCode === 0,
};
const online = internet.isMet();

const normalise = (pem: string | undefined) => (pem ?? "").replace(/\r\n/g, "\n").trim();

describeWith(
  [
    ...testHostRequirements,
    requires.command("nft", "outbound NAT for the test network (nftables)"),
    requires.env("SLAPOS_VENV", "the node's zc.buildout and supervisor (scripts/setup.sh)"),
    {
      why: "the master release built (npm run build makes dist/master-release)",
      isMet: () => execaSync("test", ["-s", RELEASE], { reject: false }).exitCode === 0,
    },
  ],
  "the master release: our master as an instance on a test host, run by a real agent for a seed master",
  () => {
    let directory: string;
    let network: TestNetwork;
    let host: TestHost;
    let node: NodeOnHost;
    let seed: NetworkMaster;
    let admin: MasterClient;
    let computerId: string;
    const clients: MasterClient[] = [];

    const instance = async (title: string): Promise<Instance> => {
      const found = (await admin.listInstances()).find(
        (candidate) => candidate.title === title && !candidate.destroyedAt,
      );
      if (!found) throw new Error(`no instance ${title}`);
      return found;
    };
    const request = (title: string, parameters: Record<string, string>) =>
      admin.requestInstance({
        title,
        softwareReleaseUrl: RELEASE,
        parameters,
        state: "started",
        sla: { computer_guid: computerId },
      });
    /** Started at the version the seed holds now, with its CA published. */
    const serving = (title: string, timeoutMs = 180_000) =>
      waitFor(
        `${title} started at its latest version with its CA published`,
        async () => {
          const current = await instance(title);
          return current.reportedState === "started" &&
            current.reportedTimestamp === current.timestamp &&
            current.connectionParameters["ca-certificate"]
            ? current
            : null;
        },
        node,
        timeoutMs,
      );
    const partitionOf = (found: Instance) => `${INSTANCE_ROOT}/${found.partitionReference}`;
    const userOf = (found: Instance) => `slapuser${found.partitionReference?.replace("slappart", "")}`;
    const addressesOf = (found: Instance) => ({
      ipv4: found.addresses.find((address) => !address.address.includes(":"))?.address ?? "",
      ipv6: found.addresses.find((address) => address.address.includes(":"))?.address ?? "",
    });
    /** The self-hosted master's admin identity, as root reads it in the partition. */
    const adminConfigOf = async (found: Instance) =>
      JSON.parse(await host.execOrThrow(`cat ${partitionOf(found)}/srv/master/admin.json`)) as ClientConfig;
    const clientOf = (connection: ConstructorParameters<typeof MasterClient>[0]) => {
      const client = new MasterClient(connection, { timeoutMs: 15_000 });
      clients.push(client);
      return client;
    };
    /** The PID of the partition's master, and of its relay, as the host's process table has them. */
    const masterPid = async (found: Instance) =>
      (
        await hostProcesses(host, `[s]lap-master.mjs master start --data ${partitionOf(found)}/srv/master`)
      )[0];
    const relayPid = async (found: Instance) =>
      (await hostProcesses(host, `[t]cp-relay.py ${addressesOf(found).ipv6} `))[0];
    const listeners = async (pid: string | undefined) =>
      (await host.execOrThrow("ss -Hltnp"))
        .split("\n")
        .filter((line) => pid && line.includes(`pid=${pid},`))
        .map((line) => line.split(/\s+/)[3])
        .sort();
    const rssMb = async (pid: string | undefined) =>
      Number((await host.execOrThrow(`ps -o rss= -p ${pid}`)).trim()) / 1024;

    /**
     * A throwaway master with a known person, who owns an instance there, backed up by
     * `slap master backup` (made once, for every test that seeds a master with it).
     */
    let backupMade: ReturnType<typeof makeBackup> | undefined;
    const throwawayBackup = () => {
      backupMade ??= makeBackup();
      return backupMade;
    };
    async function makeBackup() {
      const throwawayData = join(directory, "throwaway");
      const throwaway = await startMaster({
        dataDir: throwawayData,
        port: 0,
        logger: pino({ level: "silent" }),
      });
      const throwawayAdmin = JSON.parse(await readFile(throwaway.adminConfigPath, "utf8")) as ClientConfig;
      const alice = await clientOf(throwawayAdmin).createPerson({ name: "alice" });
      const box = await clientOf({
        url: throwaway.url,
        ca: throwawayAdmin.ca,
        certificate: alice.certificate,
        key: alice.privateKey,
      }).requestInstance({ title: "alice-box", softwareReleaseUrl: "https://example.invalid/box.cfg" });
      await throwaway.close();
      const file = join(directory, "seed-backup.json");
      const backup = await execa("node", [
        "dist/cli/main.js",
        "master",
        "backup",
        "--data",
        throwawayData,
        "--output",
        file,
      ]);
      expect(backup.stdout).toContain("backup written");
      return { throwawayAdmin, alice, box, content: await readFile(file, "utf8") };
    }
    /** Failing its deployments, saying that it waits for its seed backup. */
    const waitingForSeed = async (title: string, path: string) => {
      const waiting = await waitFor(
        `${title} waiting for its seed backup`,
        async () => {
          const current = await instance(title);
          return current.status === "error" && current.errorLog?.includes("seed backup") ? current : null;
        },
        node,
        300_000,
      );
      expect(waiting.errorLog).toContain(
        `the master waits for the seed backup ${path}, which does not exist yet: it serves once the backup is restored`,
      );
      return waiting;
    };
    /** The backup, put where the instance waits for it as a handover would: for its user only. */
    const handOver = (content: string, path: string, to: Instance) =>
      host.execOrThrow(
        `mkdir -p $(dirname ${path}) && cat > ${path}.new <<'SEED_BACKUP_END'\n${content}\nSEED_BACKUP_END\nchown ${userOf(to)} ${path}.new && chmod 400 ${path}.new && mv ${path}.new ${path}`,
      );
    /** psql inside the host, as a client of a postgresql instance, its server checked against what it published. */
    const psqlOn = async (database: Instance, ...commands: string[]) => {
      const pem = `/root/${database.id}.pem`;
      await host.execOrThrow(
        `cat > ${pem} <<'EOF'\n${database.connectionParameters["ssl-certificate"]?.trim()}\nEOF`,
      );
      const url = (database.connectionParameters["url-ipv4"] ?? "").replace(
        "sslmode=require",
        `sslmode=verify-full&sslrootcert=${pem}`,
      );
      return host.execOrThrow(
        `${POSTGRESQL_SOFTWARE_PATH}/parts/postgresql/bin/psql -X -A -t -v ON_ERROR_STOP=1 -d '${url}' ${commands.map((command) => `-c "${command}"`).join(" ")}`,
      );
    };

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-master-release-"));
      network = await TestNetwork.create({ outboundNat: online });
      host = await network.addHost({ sharedReadOnly: [process.env.SLAPOS_VENV ?? ""] });
      if (online) await network.useUpstreamDns(host);
      seed = await startNetworkMaster(network, directory);
      admin = seed.admin;
      node = await NodeOnHost.install(
        host,
        {
          masterUrl: seed.master.url,
          partitionAmount: 7,
          reportIntervalSeconds: 5,
          pythonEnvironment: process.env.SLAPOS_VENV ?? "",
        },
        seed.ca,
      );
      const { token } = await admin.createRegistrationToken();
      computerId = await node.register(token);
      await node.slapOrThrow("format");
      await node.startAgent();
    }, 180_000);
    afterAll(async () => {
      for (const client of clients) await client.close();
      await seed?.close();
      await network?.destroy();
      if (directory) await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("builds the release and serves an embedded master over IPv6 through the relay, client certificates included", async () => {
      const started = Date.now();
      await admin.supply(computerId, RELEASE);
      await request("master-embedded", { database: "embedded" });
      const software = await waitFor(
        "the master release built",
        async () =>
          (await admin.getComputer(computerId)).software.find(
            (candidate) =>
              candidate.url === RELEASE &&
              (candidate.reportedState === "available" || candidate.reportedState === "error"),
          ),
        node,
        180_000,
      );
      expect(software).toMatchObject({ reportedState: "available", errorLog: null });
      const built = Date.now();
      const buildLog = await host.execOrThrow(`cat ${SOFTWARE_PATH}/.slap-build.log`);
      expect(buildLog).toMatch(/master 0\.1\.0 on Node v\d+/);
      const master = await serving("master-embedded");
      const deployedAt = Date.now();

      const { ipv4, ipv6 } = addressesOf(master);
      const published = master.connectionParameters;
      expect(published).toMatchObject({
        url: `https://[${ipv6}]:${PORT}/`,
        "url-ipv4": `https://${ipv4}:${PORT}/`,
        database: "embedded",
      });
      expect(published["ca-certificate"]).toMatch(PEM);
      const description = JSON.parse(await readFile(DESCRIPTION, "utf8"));
      const validation = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [
          "-c",
          [
            "import json, sys, jsonschema",
            "kind, parameters, published = json.load(sys.stdin)",
            "for part in ('request', 'response'):",
            "    jsonschema.Draft202012Validator.check_schema(kind[part])",
            "jsonschema.validate(parameters, kind['request'])",
            "jsonschema.validate(published, kind['response'])",
            "for bad in ({'database': 'mysql'}, {'port': '80a'}, {}):",
            "    try:",
            "        jsonschema.validate(bad, kind['request'])",
            "        sys.exit(f'{bad} passed the request schema')",
            "    except jsonschema.ValidationError:",
            "        pass",
          ].join("\n"),
        ],
        {
          input: JSON.stringify([description["software-type"].default, { database: "embedded" }, published]),
          reject: false,
        },
      );
      expect(validation.stderr).toBe("");
      expect(validation.exitCode).toBe(0);

      // The admin's identity: made by the instance in its data directory, readable by its user only.
      const partition = partitionOf(master);
      expect(
        (
          await host.execOrThrow(`stat -c '%U %a' ${partition}/srv/master ${partition}/srv/master/admin.json`)
        ).trim(),
      ).toBe(`${userOf(master)} 700\n${userOf(master)} 600`);
      const selfAdmin = await adminConfigOf(master);
      expect(selfAdmin.url).toBe(published.url);
      expect(normalise(selfAdmin.ca)).toBe(normalise(published["ca-certificate"]));

      // From this machine, over the partition's IPv6: the relay carries TLS to the master, whose
      // certificate names that address, and the admin's client certificate with it.
      const asAdmin = clientOf({ ...selfAdmin, url: published.url ?? "" });
      expect(await asAdmin.listInstances()).toEqual([]);
      const anonymous = clientOf({ url: published.url ?? "", ca: selfAdmin.ca });
      const refusal = await anonymous.listInstances().catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(MasterApiError);
      expect((refusal as MasterApiError).status).toBe(401);
      // Another CA's client is refused the handshake's trust: the master is checked, not assumed.
      const otherCa = clientOf({ ...selfAdmin, url: published.url ?? "", ca: seed.ca });
      await expect(otherCa.listInstances()).rejects.toThrow(/cannot reach the master/);

      // Nothing listens anywhere but on the partition's own addresses, as the partition's user.
      const [masterProcess, relay] = [await masterPid(master), await relayPid(master)];
      expect(await listeners(masterProcess)).toEqual([`${ipv4}:${PORT}`]);
      expect(await listeners(relay)).toEqual([`[${ipv6}]:${PORT}`]);
      for (const pid of [masterProcess, relay]) {
        expect((await host.execOrThrow(`ps -o user= -p ${pid}`)).trim()).toBe(userOf(master));
      }
      await new Promise((wait) => setTimeout(wait, 5_000));
      console.info(
        `master release: built in ${((built - started) / 1000).toFixed(1)} s, embedded master instance serving ${((deployedAt - built) / 1000).toFixed(1)} s later; idle RSS: master ${(await rssMb(masterProcess)).toFixed(0)} MB, relay ${(await rssMb(relay)).toFixed(0)} MB`,
      );
    }, 420_000);

    it("is restarted by supervisord when its process is killed, with its data", async () => {
      const master = await instance("master-embedded");
      const selfAdmin = await adminConfigOf(master);
      const client = clientOf({ ...selfAdmin, url: master.connectionParameters.url ?? "" });
      const before = await client.requestInstance({
        title: "requested-before-the-kill",
        softwareReleaseUrl: "https://example.invalid/software.cfg",
      });
      const killed = await masterPid(master);
      expect(killed).toBeDefined();
      await host.execOrThrow(`kill -KILL ${killed}`);
      const restarted = await waitFor(
        "the master running again under a new PID",
        async () => {
          const pid = await masterPid(master);
          return pid && pid !== killed ? pid : null;
        },
        node,
      );
      const parent = (await host.execOrThrow(`ps -o ppid= -p ${restarted}`)).trim();
      expect(await host.execOrThrow(`tr '\\0' ' ' < /proc/${parent}/cmdline`)).toContain("supervisord");
      const listed = await waitFor(
        "the restarted master answering",
        () => client.listInstances().catch(() => null),
        node,
      );
      expect(listed.map((found) => found.id)).toEqual([before.id]);
      const after = await client.requestInstance({
        title: "requested-after-the-kill",
        softwareReleaseUrl: "https://example.invalid/software.cfg",
      });
      expect((await client.listInstances()).map((found) => found.id).sort()).toEqual(
        [before.id, after.id].sort(),
      );
      // Its data directory was not made again: the same CA serves.
      expect(normalise((await adminConfigOf(master)).ca)).toBe(normalise(selfAdmin.ca));
    }, 180_000);

    it("refuses to change its kind of database, and keeps serving its state meanwhile", async () => {
      const before = await instance("master-embedded");
      await request("master-embedded", { database: "postgresql", "postgresql-release": POSTGRESQL_RELEASE });
      const refused = await waitFor(
        "master-embedded refusing the other database",
        async () => {
          const current = await instance("master-embedded");
          return current.status === "error" && current.timestamp > before.timestamp ? current : null;
        },
        node,
      );
      expect(refused.errorLog).toContain(
        "database was 'embedded' at this instance's first deployment and is now 'postgresql'",
      );
      // Refused before anything was requested for it, and its master still answers.
      expect((await admin.listInstances()).map((found) => found.title)).not.toContain(
        "master-embedded-database",
      );
      const selfAdmin = await adminConfigOf(before);
      const client = clientOf({ ...selfAdmin, url: before.connectionParameters.url ?? "" });
      expect((await client.listInstances()).length).toBe(2);

      await request("master-embedded", { database: "embedded" });
      const back = await serving("master-embedded");
      expect(back.connectionParameters).toEqual(before.connectionParameters);
    }, 180_000);

    it("restores a seed backup into its empty database before it serves, once, and serves with its CA", async () => {
      const seedBackup = await throwawayBackup();
      await request("master-seeded", { database: "embedded", "seed-backup": SEED_BACKUP });
      const waiting = await waitingForSeed("master-seeded", SEED_BACKUP);
      // What is known is published already; no master serves, and none made a CA of its own.
      const { ipv4, ipv6 } = addressesOf(waiting);
      expect(waiting.connectionParameters).toEqual({
        url: `https://[${ipv6}]:${PORT}/`,
        "url-ipv4": `https://${ipv4}:${PORT}/`,
        database: "embedded",
      });
      expect(await masterPid(waiting)).toBeUndefined();
      expect((await host.execOrThrow(`ls -A ${partitionOf(waiting)}/srv/master`)).trim()).toBe("");

      await handOver(seedBackup.content, SEED_BACKUP, waiting);
      const master = await serving("master-seeded");
      const { throwawayAdmin, alice, box, content } = seedBackup;
      expect(normalise(master.connectionParameters["ca-certificate"])).toBe(normalise(throwawayAdmin.ca));
      const selfAdmin = await adminConfigOf(master);
      expect(selfAdmin.personId).toBe(throwawayAdmin.personId);
      expect(selfAdmin.url).toBe(master.connectionParameters.url);

      // Alice, with the certificate the throwaway master gave her, finds her instance there.
      const alicesHere = clientOf({
        url: master.connectionParameters.url ?? "",
        ca: master.connectionParameters["ca-certificate"],
        certificate: alice.certificate,
        key: alice.privateKey,
      });
      expect((await alicesHere.listInstances()).map((found) => [found.id, found.title])).toEqual([
        [box.id, "alice-box"],
      ]);

      // The backup's secrets are in no log.
      const caKeyLine = (JSON.parse(content).tables.authority[0].private_key_pem as string)
        .split(/\r?\n/)
        .find((line) => line.length >= 60 && !line.startsWith("-----"));
      expect(caKeyLine).toBeDefined();
      const partition = partitionOf(master);
      const leaks = await host.execOrThrow(
        `grep -rlF -- '${caKeyLine}' /var/log ${INSTANCE_ROOT}/var/log ${partition}/.slapgrid ${partition}/.installed.cfg ${partition}/etc 2>/dev/null; true`,
      );
      expect(leaks.trim()).toBe("");

      // Restored once: with the file gone, a new deployment still serves the restored state.
      const marker = await host.execOrThrow(`cat ${partition}/srv/master/seed-restored.json`);
      await host.execOrThrow(`rm ${SEED_BACKUP}`);
      await admin.bang(master.id);
      const redeployed = await waitFor(
        "master-seeded deployed again",
        async () => {
          const current = await instance("master-seeded");
          return current.timestamp > master.timestamp &&
            current.reportedState === "started" &&
            current.reportedTimestamp === current.timestamp
            ? current
            : null;
        },
        node,
        120_000,
      );
      expect(redeployed.connectionParameters).toEqual(master.connectionParameters);
      expect(await host.execOrThrow(`cat ${partition}/srv/master/seed-restored.json`)).toBe(marker);
      expect((await alicesHere.listInstances()).map((found) => found.title)).toEqual(["alice-box"]);
    }, 420_000);

    it.skipIf(!online)(
      "keeps its state in a postgresql child instance it requests with its own certificate, on its own computer",
      async () => {
        const started = Date.now();
        await request("master-pg", { database: "postgresql", "postgresql-release": POSTGRESQL_RELEASE });
        const master = await serving("master-pg", 600_000);
        console.info(
          `master release with a postgresql child: serving ${((Date.now() - started) / 1000).toFixed(1)} s after the request (the postgresql release built meanwhile)`,
        );
        expect(master.connectionParameters.database).toBe("postgresql");

        // The child, as the seed lists it: in the master's tree, on the same computer.
        const child = await instance("master-pg-database");
        expect(child).toMatchObject({
          parentId: master.id,
          rootId: master.id,
          computerId: master.computerId,
          softwareReleaseUrl: POSTGRESQL_RELEASE,
          status: "ready",
          parameters: { database: "master", user: "master" },
        });
        expect(child.partitionReference).not.toBe(master.partitionReference);

        // The master's state is in that Postgres: its CA and its admin, read there with the
        // release's own psql, checking the server against the certificate the child published.
        const partition = partitionOf(master);
        const selfAdmin = await adminConfigOf(master);
        const stored = await psqlOn(
          child,
          "select certificate_pem from authority",
          "select id from persons where is_admin",
        );
        expect(normalise(stored)).toContain(normalise(master.connectionParameters["ca-certificate"]));
        expect(stored.trim().split("\n").at(-1)).toBe(selfAdmin.personId);
        expect((await host.execOrThrow(`ls -A ${partition}/srv/master`)).split("\n")).not.toContain("pglite");

        // Its connection: cached in the partition for its user only, and on no command line.
        expect(
          (
            await host.execOrThrow(
              `stat -c '%U %a' ${partition}/srv/database/connection.json ${partition}/srv/database/url`,
            )
          ).trim(),
        ).toBe(`${userOf(master)} 600\n${userOf(master)} 600`);
        const password = child.connectionParameters.password ?? "";
        expect(password.length).toBeGreaterThan(8);
        const pid = await masterPid(master);
        expect(await host.execOrThrow(`tr '\\0' ' ' < /proc/${pid}/cmdline`)).not.toContain(password);
        expect((await host.execOrThrow(`cat /proc/${pid}/environ | tr '\\0' '\\n'`)).split("\n")).toContain(
          `DATABASE_URL=${child.connectionParameters["url-ipv4"]}`,
        );

        // The check made before the master connects refuses a server with another certificate.
        const cli = `${SOFTWARE_PATH}/parts/master/slap-master.mjs`;
        expect(
          await host.execOrThrow(
            `node ${cli} instance verify-database --directory ${partition}/srv/database`,
          ),
        ).toContain("the database server presents the certificate 'master-pg-database' published");
        await host.execOrThrow(
          [
            "mkdir -p /root/impostor",
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=impostor -keyout /root/impostor/key -out /root/impostor/pem 2>/dev/null",
            `node -e 'const fs = require("fs"); const c = JSON.parse(fs.readFileSync(process.argv[1])); c.certificate = fs.readFileSync("/root/impostor/pem", "utf8"); fs.writeFileSync("/root/impostor/connection.json", JSON.stringify(c))' ${partition}/srv/database/connection.json`,
          ].join(" && "),
        );
        const impostor = await host.exec(`node ${cli} instance verify-database --directory /root/impostor`);
        expect(impostor.exitCode).not.toBe(0);
        expect(impostor.stderr).toContain("does not present the certificate its instance published");

        // Before the child had published, the deployment failed saying what it waited for.
        expect(await host.execOrThrow("cat /var/log/slap-agent.log")).toContain(
          "waiting for the database instance 'master-pg-database'",
        );
        // With its master out of reach, the instance goes on with the connection it cached.
        const offline = await host.exec(
          `cd ${partition} && setpriv --reuid ${userOf(master)} --regid ${userOf(master)} --init-groups node ${cli} instance database --server-url https://${network.gatewayIpv4}:1/ --cert-file ${INSTANCE_ROOT}/var/pki/${master.partitionReference}.crt --key-file ${INSTANCE_ROOT}/var/pki/${master.partitionReference}.key --computer-id ${computerId} --title master-pg-database --release ${POSTGRESQL_RELEASE} --directory ${partition}/srv/database`,
        );
        expect(offline.stderr).toBe("");
        expect(offline.stdout).toMatch(
          /the master at https:\/\/[0-9.]+:1\/ cannot be reached \(.*ECONNREFUSED.*\): using the database instance's connection cached at /,
        );

        // And it serves, through its relay, as the admin it made.
        const client = clientOf({ ...selfAdmin, url: master.connectionParameters.url ?? "" });
        expect(await client.listInstances()).toEqual([]);
        console.info(`idle RSS of the master on Postgres: ${(await rssMb(pid)).toFixed(0)} MB`);
      },
      900_000,
    );

    it.skipIf(!online)(
      "restores a seed backup into its postgresql child, as a self-hosting handover does",
      async () => {
        const path = "/srv/seed/pg-backup.json";
        const { throwawayAdmin, alice, box, content } = await throwawayBackup();
        await request("master-pg-seeded", {
          database: "postgresql",
          "postgresql-release": POSTGRESQL_RELEASE,
          "seed-backup": path,
        });
        const waiting = await waitingForSeed("master-pg-seeded", path);
        // Its database is there, empty of any master: nothing made a CA before the backup came.
        const child = await instance("master-pg-seeded-database");
        expect(child).toMatchObject({ parentId: waiting.id, status: "ready" });
        expect(
          (await psqlOn(child, "select count(*) from pg_tables where tablename = 'authority'")).trim(),
        ).toBe("0");

        await handOver(content, path, waiting);
        const master = await serving("master-pg-seeded");
        expect(master.connectionParameters.database).toBe("postgresql");
        expect(normalise(master.connectionParameters["ca-certificate"])).toBe(normalise(throwawayAdmin.ca));
        expect(normalise(await psqlOn(child, "select certificate_pem from authority"))).toBe(
          normalise(throwawayAdmin.ca),
        );
        const alicesHere = clientOf({
          url: master.connectionParameters.url ?? "",
          ca: throwawayAdmin.ca,
          certificate: alice.certificate,
          key: alice.privateKey,
        });
        expect((await alicesHere.listInstances()).map((found) => found.id)).toEqual([box.id]);
      },
      600_000,
    );
  },
);
