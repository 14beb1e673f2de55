import { X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadOrCreateAuthority } from "../../master/identity/authority.js";
import { issueRecordedCertificate } from "../../master/model/certificates.js";
import { connectToMaster, openAgent } from "../../slave/agent.js";
import { renewCertificateIfDue } from "../../slave/certificate-renewal.js";
import { type NodeConfig, readNodeConfig } from "../../slave/config.js";
import { type HttpsMaster, startHttpsMaster } from "../master/https-master.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

// A node renews its computer certificate before it expires, replacing cert_file and key_file so
// that whenever it stops it holds a matching pair, and registers without its token on a command line.

const DAY_MS = 86_400_000;
const CLI = join(import.meta.dirname, "../../dist/cli/main.js");
const silent = pino({ level: "silent" });
const [pglite] = testDatabaseKinds;

const daysLeft = (certificate: string) =>
  (new Date(new X509Certificate(certificate).validTo).getTime() - Date.now()) / DAY_MS;

describeWith(pglite?.requirements ?? [], "the node's computer certificate over time", () => {
  let master: HttpsMaster;
  let directory: string;
  let ca: string;

  beforeAll(async () => {
    if (!pglite) throw new Error("no PGlite database kind");
    master = await startHttpsMaster(pglite);
    directory = await mkdtemp(join(tmpdir(), "slap-renewal-"));
    ca = master.admin.connection.ca ?? "";
  });
  afterAll(async () => {
    await master?.close();
    await rm(directory, { recursive: true, force: true });
  });

  /** A registered node whose certificate on disk lasts `days` (issued through the master's CA). */
  const nodeWithCertificate = async (name: string, days: number, extra = ""): Promise<NodeConfig> => {
    const registration = await master.client().register((await master.admin.createRegistrationToken()).token);
    const db = master.master.database.db;
    const issued = await issueRecordedCertificate(
      db,
      await loadOrCreateAuthority(db),
      "computer",
      registration.computerId,
      days,
    );
    const root = join(directory, name);
    const files = {
      cert: join(root, "ssl", "computer.crt"),
      key: join(root, "ssl", "computer.key"),
      ca: join(root, "ssl", "master-ca.crt"),
      config: join(root, "slapos.cfg"),
    };
    await execa("mkdir", ["-p", join(root, "ssl")]);
    await writeFile(files.cert, issued.certificatePem);
    await writeFile(files.key, issued.privateKeyPem, { mode: 0o600 });
    await writeFile(files.ca, ca);
    await writeFile(
      files.config,
      [
        "[slapos]",
        `computer_id = ${registration.computerId}`,
        `master_url = ${master.master.url}`,
        `cert_file = ${files.cert}`,
        `key_file = ${files.key}`,
        `master_ca_file = ${files.ca}`,
        `instance_root = ${join(root, "srv")}`,
        `software_root = ${join(root, "opt")}`,
        extra,
        "[slapformat]",
        "alter_user = false",
        // The test runs the agent as root without partition users.
        "allow_root_instances = true",
        "alter_network = false",
        "",
      ].join("\n"),
    );
    return readNodeConfig(files.config);
  };

  it("renews a certificate that expires within certificate_renewal_days, and presents the new one", async () => {
    const config = await nodeWithCertificate("due", 10);
    const oldCertificate = await readFile(config.certFile ?? "", "utf8");
    const oldKey = await readFile(config.keyFile ?? "", "utf8");
    const client = await connectToMaster(config);
    try {
      expect(await renewCertificateIfDue(config, client, silent)).toBe("renewed");
      const certificate = await readFile(config.certFile ?? "", "utf8");
      expect(daysLeft(certificate)).toBeGreaterThan(824);
      expect(client.connection.certificate).toBe(certificate);
      expect((await client.desiredState(config.computerId)).computerId).toBe(config.computerId);
      expect((await stat(config.keyFile ?? "")).mode & 0o777).toBe(0o600);
      expect((await readdir(join(config.certFile ?? "", ".."))).sort()).toEqual([
        "computer.crt",
        "computer.key",
        "master-ca.crt",
      ]);
      // The old certificate keeps working until its own expiry.
      const old = master.client(oldCertificate, oldKey);
      expect((await old.desiredState(config.computerId)).computerId).toBe(config.computerId);
      expect(await renewCertificateIfDue(config, client, silent)).toBe("not due");
    } finally {
      await client.close();
    }
  });

  it("leaves a certificate alone that is not due, or when renewal is switched off", async () => {
    const fresh = await nodeWithCertificate("fresh", 825);
    const off = await nodeWithCertificate("off", 1, "certificate_renewal_days = 0");
    for (const [config, outcome] of [
      [fresh, "not due"],
      [off, "off"],
    ] as const) {
      const before = await readFile(config.certFile ?? "", "utf8");
      const client = await connectToMaster(config);
      expect(await renewCertificateIfDue(config, client, silent)).toBe(outcome);
      await client.close();
      expect(await readFile(config.certFile ?? "", "utf8")).toBe(before);
    }
  });

  it("has the agent renew on its own when it starts, and keep working where the master is away", async () => {
    const config = await nodeWithCertificate("agent", 5);
    const agent = await openAgent(config, silent);
    await agent.release();
    const certificate = await readFile(config.certFile ?? "", "utf8");
    expect(daysLeft(certificate)).toBeGreaterThan(824);
    const client = await connectToMaster(config);
    expect((await client.desiredState(config.computerId)).computerId).toBe(config.computerId);
    await client.close();

    const away = await nodeWithCertificate("away", 5);
    const unreachable = { ...away, masterUrl: "https://127.0.0.1:9/" };
    const before = await readFile(away.certFile ?? "", "utf8");
    const lines: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => lines.push(line) });
    const offline = await openAgent(unreachable, logger);
    await offline.release();
    expect(await readFile(away.certFile ?? "", "utf8")).toBe(before);
    expect(lines.join("")).toContain("could not renew the computer's certificate");
    expect(lines.join("")).not.toContain("PRIVATE KEY");
  });

  it("completes a renewal cut short between the two renames, and drops a half-written one", async () => {
    const config = await nodeWithCertificate("cut", 3);
    const certFile = config.certFile ?? "";
    const keyFile = config.keyFile ?? "";
    const renewed = await master
      .client(await readFile(certFile, "utf8"), await readFile(keyFile, "utf8"))
      .renewCertificate();
    // Stopped after the key was renamed into place, before the certificate was.
    await writeFile(keyFile, renewed.privateKey, { mode: 0o600 });
    await writeFile(`${certFile}.renewed`, renewed.certificate);
    const client = await connectToMaster(config);
    expect(await readFile(certFile, "utf8")).toBe(renewed.certificate);
    expect(existsSync(`${certFile}.renewed`)).toBe(false);
    expect((await client.desiredState(config.computerId)).computerId).toBe(config.computerId);
    await client.close();

    // Stopped while writing the new key: the live pair stays, the leftovers go.
    await writeFile(`${keyFile}.renewed`, "-----BEGIN RSA PRIVATE KEY-----\nMIIE");
    const settled = await connectToMaster(config);
    expect(existsSync(`${keyFile}.renewed`)).toBe(false);
    expect(await readFile(certFile, "utf8")).toBe(renewed.certificate);
    expect((await settled.desiredState(config.computerId)).computerId).toBe(config.computerId);
    await settled.close();
  });

  describeWith(
    [{ why: "dist/cli/main.js: run `npm run build` first (npm test does)", isMet: () => existsSync(CLI) }],
    "slap node register",
    () => {
      const registerConfig = async (name: string) => {
        const root = join(directory, name);
        await execa("mkdir", ["-p", join(root, "ssl")]);
        // The bootstrapper writes the master's CA before it registers.
        await writeFile(join(root, "ssl", "master-ca.crt"), ca);
        const path = join(root, "slapos.cfg");
        await writeFile(
          path,
          [
            "[slapos]",
            `master_url = ${master.master.url}`,
            `cert_file = ${join(root, "ssl", "computer.crt")}`,
            `key_file = ${join(root, "ssl", "computer.key")}`,
            `master_ca_file = ${join(root, "ssl", "master-ca.crt")}`,
            "",
          ].join("\n"),
        );
        return path;
      };

      it("reads the token from standard input or a file, so that it is on no command line", async () => {
        for (const [name, how] of [
          ["stdin", "stdin"],
          ["file", "file"],
        ] as const) {
          const path = await registerConfig(`register-${name}`);
          const { token } = await master.admin.createRegistrationToken();
          const tokenFile = join(directory, `register-${name}`, "token");
          await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
          const run = await execa(
            "node",
            [CLI, "node", "register", "--config", path, "--token-file", how === "stdin" ? "-" : tokenFile],
            { input: how === "stdin" ? `${token}\n` : "", reject: false },
          );
          expect(run.exitCode, run.stderr).toBe(0);
          expect(run.stderr).not.toContain(token);
          const config = await readNodeConfig(path);
          expect(config.computerId).toMatch(/^COMP-/);
          expect((await stat(config.keyFile ?? "")).mode & 0o777).toBe(0o600);
        }
      });

      it("refuses a token given twice, or none, saying how to give it", async () => {
        const path = await registerConfig("register-refused");
        const twice = await execa(
          "node",
          [CLI, "node", "register", "--config", path, "--token", "x", "--token-file", "-"],
          { input: "y", reject: false },
        );
        expect(twice.exitCode).not.toBe(0);
        expect(twice.stderr).toContain("--token or --token-file, not both");
        const none = await execa("node", [CLI, "node", "register", "--config", path], { reject: false });
        expect(none.exitCode).not.toBe(0);
        expect(none.stderr).toContain("--token-file FILE (or --token-file - to read it from standard input)");
        const empty = await execa("node", [CLI, "node", "register", "--config", path, "--token-file", "-"], {
          input: "\n",
          reject: false,
        });
        expect(empty.stderr).toContain("standard input must hold the registration token alone");
      });
    },
  );
});
