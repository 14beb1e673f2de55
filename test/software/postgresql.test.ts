import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa, execaSync } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Instance, MasterClient } from "../../protocol/client.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { INSTANCE_ROOT, NodeOnHost, SOFTWARE_ROOT, waitFor } from "../slave/node-on-host.js";
import { type NetworkMaster, startNetworkMaster } from "../support/network-master.js";
import { hostProcesses } from "../support/node-host.js";
import { describeWith, type Requirement, requires } from "../support/requirements.js";

const RELEASE = resolve("examples/software/postgresql/software.cfg");
const DESCRIPTION = resolve("examples/software/postgresql/software.cfg.json");
const SOFTWARE_PATH = `${SOFTWARE_ROOT}/${createHash("md5").update(RELEASE).digest("hex")}`;
/** The release's own client, run as root inside the test host: a client beside the server. */
const PSQL = `${SOFTWARE_PATH}/parts/postgresql/bin/psql`;
/** Where the test host keeps the certificate the instance published, to verify the server with. */
const PINNED_CERTIFICATE = "/root/postgresql-server.pem";
const PARAMETERS = { database: "shop", user: "app" };

/** The release downloads its server from PyPI's files host, as a real node does. */
const internet: Requirement = {
  why: "this machine's access to https://files.pythonhosted.org (the release downloads PostgreSQL from PyPI; test hosts reach it through NAT)",
  isMet: () =>
    execaSync("curl", ["-sS", "-o", "/dev/null", "--max-time", "15", "https://files.pythonhosted.org/"], {
      reject: false,
    }).exitCode === 0,
};

describeWith(
  [
    ...testHostRequirements,
    requires.command("nft", "outbound NAT for the test network (nftables)"),
    requires.command("curl", "checks this machine's access to PyPI"),
    requires.env("SLAPOS_VENV", "the node's zc.buildout and supervisor (scripts/setup.sh)"),
    internet,
  ],
  "the postgresql release on a test host, built from PyPI by real buildout, run by a real agent",
  () => {
    let directory: string;
    let network: TestNetwork;
    let host: TestHost;
    let node: NodeOnHost;
    let running: NetworkMaster;
    let admin: MasterClient;
    let computerId: string;
    let partitionPath: string;

    const instance = async (title: string): Promise<Instance> => {
      const found = (await admin.listInstances()).find(
        (candidate) => candidate.title === title && !candidate.destroyedAt,
      );
      if (!found) throw new Error(`no instance ${title}`);
      return found;
    };
    const request = (
      title: string,
      parameters: Record<string, string>,
      state: "started" | "stopped" | "destroyed" = "started",
      softwareType?: string,
    ) =>
      admin.requestInstance({
        title,
        softwareReleaseUrl: RELEASE,
        parameters,
        state,
        sla: { computer_guid: computerId },
        ...(softwareType ? { softwareType } : {}),
      });
    /** Waits until the agent reported `state` for the version the master holds now. */
    const deployed = (title: string, state: "started" | "stopped", timeoutMs = 120_000) =>
      waitFor(
        `${title} ${state} at its latest version`,
        async () => {
          const current = await instance(title);
          return current.reportedState === state && current.reportedTimestamp === current.timestamp
            ? current
            : null;
        },
        node,
        timeoutMs,
      );
    /** psql as a client inside the test host: the SQL on stdin, unaligned tuples out. */
    const psql = (url: string, sql: string) =>
      host.exec(`${PSQL} -X -A -t -v ON_ERROR_STOP=1 -d '${url}' <<'SQL'\n${sql}\nSQL`);
    const psqlOrThrow = async (url: string, sql: string) => {
      const result = await psql(url, sql);
      if (result.exitCode !== 0) throw new Error(`psql failed (${result.exitCode}): ${result.stderr}`);
      return result.stdout.trim();
    };
    /** The published URL, made to check the server's certificate and address against the pinned one. */
    const verified = (url: string) =>
      url.replace("sslmode=require", `sslmode=verify-full&sslrootcert=${PINNED_CERTIFICATE}`);
    const postmasters = () => hostProcesses(host, "[b]in/postgres -D");

    beforeAll(async () => {
      directory = await mkdtemp(join(tmpdir(), "slap-postgresql-"));
      network = await TestNetwork.create({ outboundNat: true });
      host = await network.addHost({ sharedReadOnly: [process.env.SLAPOS_VENV ?? ""] });
      await network.useUpstreamDns(host);
      running = await startNetworkMaster(network, directory);
      admin = running.admin;
      node = await NodeOnHost.install(
        host,
        {
          masterUrl: running.master.url,
          partitionAmount: 3,
          reportIntervalSeconds: 2,
          pythonEnvironment: process.env.SLAPOS_VENV ?? "",
        },
        running.ca,
      );
      const { token } = await admin.createRegistrationToken();
      computerId = await node.register(token);
      await node.slapOrThrow("format");
      await node.startAgent();
    }, 180_000);
    afterAll(async () => {
      await running?.close();
      await network?.destroy();
      if (directory) await rm(directory, { recursive: true, force: true });
    }, 60_000);

    it("builds the release from the pinned wheel and publishes the connection values its description promises", async () => {
      const started = Date.now();
      await admin.supply(computerId, RELEASE);
      await request("db", PARAMETERS);
      const software = await waitFor(
        "the release built",
        async () =>
          (await admin.getComputer(computerId)).software.find(
            (candidate) =>
              candidate.url === RELEASE &&
              (candidate.reportedState === "available" || candidate.reportedState === "error"),
          ),
        node,
        300_000,
      );
      expect(software).toMatchObject({ reportedState: "available", errorLog: null });
      const built = Date.now();
      const buildLog = await host.execOrThrow(`cat ${SOFTWARE_PATH}/.slap-build.log`);
      expect(buildLog).toContain("Downloading https://files.pythonhosted.org/");
      expect(await host.execOrThrow(`${SOFTWARE_PATH}/parts/postgresql/bin/postgres --version`)).toContain(
        "(PostgreSQL) 18.6",
      );

      const db = await deployed("db", "started");
      console.info(
        `postgresql release: built in ${((built - started) / 1000).toFixed(1)} s on a fresh host, instance started ${((Date.now() - built) / 1000).toFixed(1)} s later`,
      );
      const published = db.connectionParameters;
      const ipv4 = db.addresses.find((address) => !address.address.includes(":"))?.address ?? "";
      const ipv6 = db.addresses.find((address) => address.address.includes(":"))?.address ?? "";
      const password = published.password ?? "";
      expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(published).toMatchObject({
        "host-ipv4": ipv4,
        "host-ipv6": ipv6,
        port: "5432",
        user: "app",
        database: "shop",
        version: "18.6",
        url: `postgresql://app:${password}@[${ipv6}]:5432/shop?sslmode=require`,
        "url-ipv6": `postgresql://app:${password}@[${ipv6}]:5432/shop?sslmode=require`,
        "url-ipv4": `postgresql://app:${password}@${ipv4}:5432/shop?sslmode=require`,
      });
      expect(published["ssl-certificate"]).toMatch(
        /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/,
      );

      // What software.cfg.json says, checked by a real JSON Schema validator against what was
      // requested and what the running instance published.
      const description = JSON.parse(await readFile(DESCRIPTION, "utf8"));
      expect(Object.keys(description["software-type"]).sort()).toEqual(["default", "server"]);
      const validation = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [
          "-c",
          [
            "import json, sys, jsonschema",
            "description, parameters, published = json.load(sys.stdin)",
            "for kind in description['software-type'].values():",
            "    for part in ('request', 'response'):",
            "        jsonschema.Draft202012Validator.check_schema(kind[part])",
            "    jsonschema.validate(parameters, kind['request'])",
            "    jsonschema.validate(published, kind['response'])",
            "try:",
            "    jsonschema.validate({'port': 'five'}, description['software-type']['default']['request'])",
            "    sys.exit('a bad port passed the request schema')",
            "except jsonschema.ValidationError:",
            "    pass",
          ].join("\n"),
        ],
        { input: JSON.stringify([description, PARAMETERS, published]), reject: false },
      );
      expect(validation.stderr).toBe("");
      expect(validation.exitCode).toBe(0);

      // The password: made once in the partition, readable by its user only, in no log.
      partitionPath = `${INSTANCE_ROOT}/${db.partitionReference}`;
      const owner = `slapuser${(db.partitionReference ?? "").replace("slappart", "")}`;
      expect(
        (
          await host.execOrThrow(
            `stat -c '%U %a' ${partitionPath}/srv/postgresql/password ${partitionPath}/etc/postgresql/server.key`,
          )
        ).trim(),
      ).toBe(`${owner} 600\n${owner} 600`);
      expect((await host.execOrThrow(`cat ${partitionPath}/srv/postgresql/password`)).trim()).toBe(password);
      const logsWithPassword = await host.execOrThrow(
        `grep -rlF -- '${password}' /var/log ${INSTANCE_ROOT}/var/log ${SOFTWARE_PATH}/.slap-build.log ${partitionPath}/.slapgrid ${partitionPath}/.installed.cfg ${partitionPath}/etc 2>/dev/null; true`,
      );
      expect(logsWithPassword.trim()).toBe("");
    });

    it("serves clients over TLS with SCRAM on both addresses, verified against the published certificate", async () => {
      const db = await instance("db");
      const published = db.connectionParameters;
      await host.execOrThrow(
        `cat > ${PINNED_CERTIFICATE} <<'EOF'\n${published["ssl-certificate"]?.trim()}\nEOF`,
      );
      const ipv6 = verified(published.url ?? "");
      const ipv4 = verified(published["url-ipv4"] ?? "");
      expect(
        await psqlOrThrow(
          ipv6,
          "CREATE TABLE orders (id integer PRIMARY KEY, item text NOT NULL);\nINSERT INTO orders VALUES (1, 'bread'), (2, 'cheese');",
        ),
      ).toBe("CREATE TABLE\nINSERT 0 2");
      const session =
        "SELECT current_user, current_database(), ssl, inet_server_addr() FROM pg_stat_ssl WHERE pid = pg_backend_pid();";
      expect(await psqlOrThrow(ipv6, session)).toBe(`app|shop|t|${published["host-ipv6"]}`);
      expect(await psqlOrThrow(ipv4, session)).toBe(`app|shop|t|${published["host-ipv4"]}`);
      expect(await psqlOrThrow(ipv4, "SELECT string_agg(item, ',' ORDER BY id) FROM orders;")).toBe(
        "bread,cheese",
      );

      // Without TLS, with a wrong password, or against another certificate: refused.
      const plain = await psql(
        published["url-ipv4"]?.replace("sslmode=require", "sslmode=disable") ?? "",
        "SELECT 1;",
      );
      expect(plain.exitCode).not.toBe(0);
      expect(plain.stderr).toContain("no encryption");
      const wrongPassword = await psql(
        ipv4.replace(`:${published.password}@`, ":not-the-password@"),
        "SELECT 1;",
      );
      expect(wrongPassword.exitCode).not.toBe(0);
      expect(wrongPassword.stderr).toContain("password authentication failed");
      await host.execOrThrow(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=impostor -keyout /root/other.key -out /root/other.pem 2>/dev/null",
      );
      const otherCertificate = await psql(ipv6.replace(PINNED_CERTIFICATE, "/root/other.pem"), "SELECT 1;");
      expect(otherCertificate.exitCode).not.toBe(0);
      expect(otherCertificate.stderr).toMatch(/certificate verify failed/);
      // The cluster's superuser (the partition's user, by peer through the socket) never logs in from the network.
      const superuser = await psql(
        ipv4.replace(/\/\/app:/, `//slapuser${db.partitionReference?.replace("slappart", "")}:`),
        "SELECT 1;",
      );
      expect(superuser.exitCode).not.toBe(0);
      expect(superuser.stderr).toContain("rejects connection");
    });

    it("listens on nothing but the partition's addresses, and on a socket inside the partition", async () => {
      const db = await instance("db");
      const published = db.connectionParameters;
      const [postmaster] = await postmasters();
      expect(postmaster).toBeDefined();
      const listeners = (await host.execOrThrow("ss -Hltnp"))
        .split("\n")
        .filter((line) => line.includes(`pid=${postmaster},`))
        .map((line) => line.split(/\s+/)[3])
        .sort();
      expect(listeners).toEqual(
        [`${published["host-ipv4"]}:5432`, `[${published["host-ipv6"]}]:5432`].sort(),
      );
      const sockets = (await host.execOrThrow("ss -Hlxp"))
        .split("\n")
        .filter((line) => line.includes(`pid=${postmaster},`))
        .map((line) => line.split(/\s+/)[4]);
      expect(sockets).toEqual([`${partitionPath}/var/run/postgresql/.s.PGSQL.5432`]);
      const owner = `slapuser${(db.partitionReference ?? "").replace("slappart", "")}`;
      expect((await host.execOrThrow(`ps -o user= -p ${postmaster}`)).trim()).toBe(owner);
    });

    it("keeps the data, password and certificate across a redeployment that restarts the server", async () => {
      const before = await instance("db");
      const [oldPostmaster] = await postmasters();
      await request("db", { ...PARAMETERS, "max-connections": "50" });
      const after = await deployed("db", "started");
      expect(after.timestamp).toBeGreaterThan(before.timestamp);
      const [newPostmaster] = await waitFor(
        "the server restarted with its new configuration",
        async () => {
          const now = await postmasters();
          return now.length === 1 && now[0] !== oldPostmaster ? now : null;
        },
        node,
      );
      expect(newPostmaster).not.toBe(oldPostmaster);
      expect(after.connectionParameters).toEqual(before.connectionParameters);
      const url = verified(after.connectionParameters["url-ipv4"] ?? "");
      expect(await psqlOrThrow(url, "SHOW max_connections;")).toBe("50");
      expect(await psqlOrThrow(url, "SELECT string_agg(item, ',' ORDER BY id) FROM orders;")).toBe(
        "bread,cheese",
      );
      // Only the new configuration's service is left for supervisord to run.
      expect((await host.execOrThrow(`ls ${partitionPath}/etc/service`)).trim()).toMatch(
        /^postgresql-[0-9a-f]{16}$/,
      );
    });

    it("refuses a software type it does not have yet, saying so", async () => {
      await request("db-replica", {}, "started", "replica");
      const failed = await waitFor(
        "db-replica in error",
        async () => {
          const current = await instance("db-replica");
          return current.status === "error" ? current : null;
        },
        node,
      );
      expect(failed.errorLog).toContain(
        "software type 'replica' (a streaming replica of a server) is not implemented yet",
      );
      await request("db-replica", {}, "destroyed", "replica");
      await waitFor(
        "db-replica destroyed",
        async () => !(await admin.listInstances()).some((i) => i.title === "db-replica" && !i.destroyedAt),
        node,
      );
    });

    it("stops the server with the instance, and starts it again with its data", async () => {
      await request("db", { ...PARAMETERS, "max-connections": "50" }, "stopped");
      await deployed("db", "stopped");
      expect(await hostProcesses(host, "[p]ostgres")).toEqual([]);
      expect((await host.execOrThrow("ss -Hltn")).includes(":5432 ")).toBe(false);

      await request("db", { ...PARAMETERS, "max-connections": "50" }, "started");
      const db = await deployed("db", "started");
      expect(
        await psqlOrThrow(
          verified(db.connectionParameters.url ?? ""),
          "SELECT string_agg(item, ',' ORDER BY id) FROM orders;",
        ),
      ).toBe("bread,cheese");
    });

    it("destroys the instance: no process left, the partition emptied and free", async () => {
      const db = await instance("db");
      await request("db", PARAMETERS, "destroyed");
      await waitFor(
        "db destroyed",
        async () => !(await admin.listInstances()).some((i) => i.title === "db" && !i.destroyedAt),
        node,
      );
      expect(await hostProcesses(host, "[p]ostgres")).toEqual([]);
      const partition = (await admin.getComputer(computerId)).partitions.find(
        (candidate) => candidate.reference === db.partitionReference,
      );
      expect(partition).toMatchObject({ state: "free", instanceId: null });
      expect((await host.execOrThrow(`ls -A ${partitionPath}`)).trim()).toBe(".slapos-resource");
    });
  },
);
