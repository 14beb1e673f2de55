import { X509Certificate } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, readFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { isIP, connect as netConnect } from "node:net";
import { join } from "node:path";
import { checkServerIdentity, connect as tlsConnect } from "node:tls";
import type { Command } from "commander";
import { sql } from "drizzle-orm";
import pino from "pino";
import { LOG_REDACTION } from "../../../master/api/log-error.js";
import { type Backup, restoreBackup } from "../../../master/backup.js";
import { claimDataDir, secureDataDir, writePrivateFile } from "../../../master/data-dir.js";
import { openDatabase, type Rows, rowsOf } from "../../../master/db/connect.js";
import { type ClientConfig, startMaster } from "../../../master/server.js";
import { type Instance, MasterApiError, MasterClient } from "../../../protocol/client.js";

// The steps of the master release's instances (examples/software/master/software.cfg): what its
// instance buildout, its master service and its promise run, bundled with the master into
// slap-master.mjs so that they need nothing but Node on the node.

/** What the database instance is asked for: one role and one database for the master. */
export const DATABASE_PARAMETERS = { database: "master", user: "master" };
/** Beside the master's own files: marks that the seed backup was restored into this master. */
export const SEED_MARKER = "seed-restored.json";

const exists = (path: string) =>
  access(path, constants.F_OK).then(
    () => true,
    () => false,
  );

/** A wait the deployment fails with until it is over (the agent deploys again shortly). */
class Waiting extends Error {}

/**
 * The CA of the master at `url`, taken from the chain the server presents and believed only if
 * it signed this instance's own certificate, which the node received from its master over a
 * checked connection: whoever answers at `url` without that CA's key cannot pass as the master
 * afterwards, since the request that follows checks the server against it.
 */
export async function masterAuthority(url: URL, own: X509Certificate): Promise<string> {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 443);
  const chain = await new Promise<X509Certificate[]>((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port,
      ...(isIP(host) ? {} : { servername: host }),
      // Only read here: nothing is sent before the server is checked against the CA found.
      rejectUnauthorized: false,
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error("no TLS handshake within 10 s")));
    socket.once("error", reject);
    socket.once("secureConnect", () => {
      const found: X509Certificate[] = [];
      const seen = new Set<string>();
      let current = socket.getPeerCertificate(true);
      while (current?.raw && !seen.has(current.fingerprint256)) {
        seen.add(current.fingerprint256);
        found.push(new X509Certificate(current.raw));
        current = current.issuerCertificate;
      }
      socket.destroy();
      resolve(found);
    });
  });
  const authority = chain.find(
    (candidate) => candidate.ca && own.checkIssued(candidate) && own.verify(candidate.publicKey),
  );
  if (!authority) {
    throw new Error(
      `the server at ${url.origin} does not present the CA that issued this instance's certificate: it is not this instance's master`,
    );
  }
  return authority.toString();
}

interface DatabaseConnection {
  title: string;
  instanceId: string;
  /** The URL the database instance published for its IPv4 (postgres.js reads no IPv6 literal). */
  url: string;
  /** The server's self-signed certificate, as the database instance published it. */
  certificate: string;
  savedAt: string;
}

/**
 * Whether the server at the connection's address presents the certificate its instance published,
 * for that address: postgres.js checks a server's name against `localhost` when it is reached by
 * IP address, so the master connects with sslmode=require and this check is made before it does.
 */
export async function verifyDatabaseServer(connection: Pick<DatabaseConnection, "url" | "certificate">) {
  const url = new URL(connection.url);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port || 5432);
  const where = `the database server at ${host}:${port}`;
  const raw = netConnect({ host, port });
  raw.setTimeout(10_000, () => raw.destroy(new Error("no answer within 10 s")));
  try {
    await new Promise<void>((resolve, reject) => {
      raw.once("error", reject);
      raw.once("connect", () => {
        // PostgreSQL's SSLRequest: its length, 8, then the code 80877103.
        const request = Buffer.alloc(8);
        request.writeInt32BE(8, 0);
        request.writeInt32BE(80_877_103, 4);
        raw.write(request);
      });
      raw.once("data", (answer) => {
        if (answer[0] !== 0x53) reject(new Error("it refuses TLS"));
        else resolve();
      });
    }).catch((error: Error) => {
      throw new Error(`${where} cannot be checked: ${error.message}`);
    });
    await new Promise<void>((resolve, reject) => {
      const secure = tlsConnect({
        socket: raw,
        ca: connection.certificate,
        checkServerIdentity: (_name, certificate) => checkServerIdentity(host, certificate),
      });
      secure.once("error", reject);
      secure.once("secureConnect", () => {
        secure.destroy();
        resolve();
      });
    }).catch((error: Error) => {
      throw new Error(`${where} does not present the certificate its instance published: ${error.message}`);
    });
  } finally {
    raw.destroy();
  }
}

interface DatabaseOptions {
  serverUrl: string;
  certFile: string;
  keyFile: string;
  computerId: string;
  title: string;
  release: string;
  directory: string;
}

/** The published connection of the database instance, or the reason to wait for it. */
function connectionOf(child: Instance, options: DatabaseOptions): DatabaseConnection {
  const published = child.connectionParameters;
  const address = published["url-ipv4"];
  const certificate = published["ssl-certificate"];
  if (!address || !certificate) {
    const where = child.partitionReference ? ` on ${child.computerId} ${child.partitionReference}` : "";
    const error = child.errorLog ? `; its last error: ${child.errorLog.trim().split("\n").at(-1)}` : "";
    throw new Waiting(
      `waiting for the database instance '${options.title}' (${options.release}) to publish url-ipv4 and ssl-certificate: it is ${child.status}${where}${error}`,
    );
  }
  return {
    title: options.title,
    instanceId: child.id,
    url: address,
    certificate,
    savedAt: new Date().toISOString(),
  };
}

/**
 * Requests the database instance as this instance (a child in its own tree, on its own computer)
 * and writes its connection into `directory`, once its server is checked: `connection.json` (the
 * last known one, for when the master cannot be reached, such as when it is this very instance
 * and is down), `url` (0600) and `server.pem`.
 */
async function ensureDatabase(options: DatabaseOptions): Promise<string> {
  const cache = join(options.directory, "connection.json");
  await mkdir(options.directory, { recursive: true, mode: 0o700 });
  let connection: DatabaseConnection;
  let note: string;
  try {
    const [certificate, key] = await Promise.all([
      readFile(options.certFile, "utf8"),
      readFile(options.keyFile, "utf8"),
    ]);
    const url = new URL(options.serverUrl);
    const ca = await masterAuthority(url, new X509Certificate(certificate));
    const client = new MasterClient({ url: options.serverUrl, ca, certificate, key }, { timeoutMs: 20_000 });
    try {
      const child = await client.requestInstance({
        title: options.title,
        softwareReleaseUrl: options.release,
        softwareType: "default",
        parameters: DATABASE_PARAMETERS,
        sla: { computer_guid: options.computerId },
        state: "started",
      });
      connection = connectionOf(child, options);
      note = `database instance '${options.title}' (${child.id}) on ${child.computerId} ${child.partitionReference}`;
    } finally {
      await client.close();
    }
  } catch (error) {
    // The master answered: what it said holds, a cached connection would be stale.
    if (error instanceof Waiting || error instanceof MasterApiError) throw error;
    const cached = await readFile(cache, "utf8").catch(() => undefined);
    if (!cached) {
      throw new Error(
        `cannot request the database instance from ${options.serverUrl} (${(error as Error).message}) and no connection to it is cached yet`,
      );
    }
    connection = JSON.parse(cached) as DatabaseConnection;
    note = `the master at ${options.serverUrl} cannot be reached (${(error as Error).message}): using the database instance's connection cached at ${connection.savedAt}`;
  }
  await verifyDatabaseServer(connection);
  await writePrivateFile(cache, `${JSON.stringify(connection, null, 2)}\n`);
  await writePrivateFile(join(options.directory, "url"), connection.url);
  await writePrivateFile(join(options.directory, "server.pem"), connection.certificate);
  return note;
}

async function readAdminConfig(dataDir: string): Promise<ClientConfig | undefined> {
  const text = await readFile(join(dataDir, "admin.json"), "utf8").catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as ClientConfig);
}

/**
 * Creates the master's state (CA, admin, admin.json) before its service first starts, so that the
 * deployment that creates it publishes its CA at once. Starting the master for a moment on a
 * loopback port reuses exactly what `master start` does.
 */
async function initialise(dataDir: string, publicUrl: string): Promise<string> {
  if (await readAdminConfig(dataDir)) return "the master's state exists";
  const running = await startMaster({
    dataDir,
    databaseUrl: process.env.DATABASE_URL || undefined,
    host: "127.0.0.1",
    port: 0,
    publicUrl,
    logger: pino({ name: "slap-master", level: "warn", redact: LOG_REDACTION }, pino.destination(2)),
  });
  await running.close();
  if (!(await readAdminConfig(dataDir))) {
    throw new Error(
      `the database already holds a master's state whose admin is not in ${dataDir}/admin.json: restore this master from a backup (seed-backup) into an empty database instead`,
    );
  }
  return "created the master's CA and admin";
}

interface BackupFile {
  backup: Backup;
  authority: string | undefined;
}

async function readBackup(path: string): Promise<BackupFile> {
  let backup: Backup;
  try {
    backup = JSON.parse(await readFile(path, "utf8")) as Backup;
  } catch (error) {
    // Never the content: the file holds the CA key.
    throw new Error(
      `the seed backup ${path} cannot be read as JSON (${(error as NodeJS.ErrnoException).code ?? "syntax error"})`,
    );
  }
  const authority = (backup.tables?.authority?.[0] as { certificate_pem?: string } | undefined)
    ?.certificate_pem;
  return { backup, authority };
}

/**
 * Waits for the seed backup, then restores it into the master's still empty database, once: the
 * marker in the data directory says it is done. A database already holding the backup's own CA
 * was restored by an earlier run stopped before its marker; any other state is refused.
 */
async function restoreSeed(dataDir: string, input: string): Promise<string> {
  const marker = join(dataDir, SEED_MARKER);
  if (await exists(marker)) return "the seed backup was restored earlier";
  let announced = false;
  while (!(await exists(input))) {
    if (!announced) console.error(`waiting for the seed backup ${input}`);
    announced = true;
    await new Promise((wait) => setTimeout(wait, 1_000));
  }
  const { backup, authority } = await readBackup(input);
  const databaseUrl = process.env.DATABASE_URL || undefined;
  await secureDataDir(dataDir);
  const release = databaseUrl ? async () => {} : await claimDataDir(dataDir, "restore of the seed backup");
  const database = await openDatabase({ databaseUrl, dataDir });
  let outcome: string;
  try {
    const result = await database.db.execute<{ certificate_pem: string }>(
      sql`select certificate_pem from authority where id = 1`,
    );
    const present = rowsOf(result as Rows<{ certificate_pem: string }>)[0]?.certificate_pem;
    if (present === undefined) {
      const counts = await restoreBackup(database, backup);
      outcome = `restored the seed backup: ${Object.entries(counts)
        .map(([table, rows]) => `${table}=${rows}`)
        .join(" ")}`;
    } else if (present === authority) {
      outcome = "the database already holds the seed backup's state";
    } else {
      throw new Error(
        "the master's database already holds another master's state: a seed backup is only restored into an empty database (remove the seed-backup parameter to keep this state)",
      );
    }
  } finally {
    await database.close();
    await secureDataDir(dataDir);
    await release();
  }
  if (backup.adminConfig && !(await readAdminConfig(dataDir))) {
    await writePrivateFile(join(dataDir, "admin.json"), `${JSON.stringify(backup.adminConfig, null, 2)}\n`);
  }
  await writePrivateFile(
    marker,
    `${JSON.stringify({ restoredAt: new Date().toISOString(), backupCreatedAt: backup.createdAt })}\n`,
  );
  return outcome;
}

/** One HTTPS request to the public URL, its server checked against `ca`: the status it answers. */
function answerOf(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest(new URL("api/v1/openapi.json", url), { ca, agent: false, timeout: 3_000 });
    request.once("timeout", () => request.destroy(new Error("no answer within 3 s")));
    request.once("error", reject);
    request.once("response", (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.end();
  });
}

interface CheckOptions {
  data: string;
  publicUrl: string;
  publishFile: string;
  seedBackup: string;
  waitSeconds: number;
}

/** The promise: the master answers at its public URL with its CA, which is the one published. */
async function check(options: CheckOptions): Promise<string> {
  if (options.seedBackup && !(await exists(join(options.data, SEED_MARKER)))) {
    const state = (await exists(options.seedBackup)) ? "is there and being restored" : "does not exist yet";
    throw new Error(
      `the master waits for the seed backup ${options.seedBackup}, which ${state}: it serves once the backup is restored`,
    );
  }
  const admin = await readAdminConfig(options.data);
  if (!admin?.ca)
    throw new Error(`the master has no CA yet (${options.data}/admin.json): it is being created`);
  const deadline = Date.now() + options.waitSeconds * 1000;
  let status: number | undefined;
  let failure: Error | undefined;
  while (status === undefined) {
    try {
      status = await answerOf(options.publicUrl, admin.ca);
    } catch (error) {
      failure = error as Error;
      if (Date.now() > deadline) {
        throw new Error(`the master does not answer at ${options.publicUrl} with its CA: ${failure.message}`);
      }
      await new Promise((wait) => setTimeout(wait, 250));
    }
  }
  const published = JSON.parse(await readFile(options.publishFile, "utf8").catch(() => "{}")) as Record<
    string,
    string
  >;
  if (published["ca-certificate"] !== admin.ca) {
    throw new Error(
      "the master's CA certificate is not published yet: the next deployment of this instance publishes it",
    );
  }
  return `the master answers at ${options.publicUrl} (HTTP ${status}) with the published CA`;
}

function report(work: () => Promise<string>): () => Promise<void> {
  return async () => {
    // Everything this writes (database files, keys, connection files) is private.
    process.umask(0o077);
    console.log(await work());
  };
}

/** `slap-master instance ...`: not for people; the release's buildout, service and promise run these. */
export function registerInstanceCommands(program: Command): void {
  const instance = program
    .command("instance")
    .description("steps of the master release's instances (run by their buildout, service and promise)");
  instance
    .command("database")
    .description("request the database instance as this instance and write its connection")
    .requiredOption(
      "--server-url <url>",
      "the master this instance belongs to ([slap-connection] server-url)",
    )
    .requiredOption("--cert-file <file>", "this instance's certificate")
    .requiredOption("--key-file <file>", "this instance's key")
    .requiredOption("--computer-id <id>", "this instance's computer, where the database goes too")
    .requiredOption("--title <title>", "the database instance's title")
    .requiredOption("--release <url>", "the postgresql software release")
    .requiredOption("--directory <dir>", "where its connection is written and cached")
    .action((options: DatabaseOptions) => report(() => ensureDatabase(options))());
  instance
    .command("verify-database")
    .description("check that the database server presents the certificate its instance published")
    .requiredOption("--directory <dir>", "where its connection was written")
    .action((options: { directory: string }) =>
      report(async () => {
        const connection = JSON.parse(
          await readFile(join(options.directory, "connection.json"), "utf8"),
        ) as DatabaseConnection;
        await verifyDatabaseServer(connection);
        return `the database server presents the certificate '${connection.title}' published`;
      })(),
    );
  instance
    .command("init")
    .description("create the master's CA and admin unless they exist ($DATABASE_URL: its Postgres)")
    .requiredOption("--data <dir>", "the master's data directory")
    .requiredOption("--public-url <url>", "the master's public URL")
    .action((options: { data: string; publicUrl: string }) =>
      report(() => initialise(options.data, options.publicUrl))(),
    );
  instance
    .command("restore-seed")
    .description(
      "wait for a backup and restore it into the empty database, once ($DATABASE_URL: its Postgres)",
    )
    .requiredOption("--data <dir>", "the master's data directory")
    .requiredOption("--input <file>", "the seed backup (slap master backup)")
    .action((options: { data: string; input: string }) =>
      report(() => restoreSeed(options.data, options.input))(),
    );
  instance
    .command("check")
    .description("the promise: the master answers at its public URL with its published CA")
    .requiredOption("--data <dir>", "the master's data directory")
    .requiredOption("--public-url <url>", "the master's public URL")
    .requiredOption("--publish-file <file>", "what the instance publishes")
    .option("--seed-backup <file>", "the seed backup, when the instance has one", "")
    .option("--wait <seconds>", "how long the master may take to answer", "15")
    .action(
      (options: { data: string; publicUrl: string; publishFile: string; seedBackup: string; wait: string }) =>
        report(() => check({ ...options, waitSeconds: Number(options.wait) }))(),
    );
}
