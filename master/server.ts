import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { getRequestListener } from "@hono/node-server";
import pino, { type Logger } from "pino";
import { createMasterApp } from "./api/app.js";
import type { MasterServices } from "./api/context.js";
import { LOG_REDACTION } from "./api/log-error.js";
import { claimDataDir, secureDataDir, writePrivateFile } from "./data-dir.js";
import { type Database, openDatabase, redactUrl } from "./db/connect.js";
import { issueServerCertificate, loadOrCreateAuthority } from "./identity/authority.js";
import { DesiredStates } from "./model/desired-state.js";
import { createPerson, findAdmin } from "./model/persons.js";

export interface MasterOptions {
  /** Holds admin.json and, without databaseUrl, the embedded PGlite database. */
  dataDir: string;
  databaseUrl?: string;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Plain HTTP, loopback only, no identity checks (every caller is the admin). */
  insecureHttp?: boolean;
  /**
   * The URL clients use when it is not the listener's own (the master behind a TCP relay or a
   * port forward): its host joins the names of the server's certificate, and it is the URL
   * written to admin.json and answered as `url`.
   */
  publicUrl?: string;
  logger?: Logger;
}

/** What a client needs to act as a person: written to `<dataDir>/admin.json` at first start. */
export interface ClientConfig {
  url: string;
  ca?: string;
  certificate?: string;
  key?: string;
  personId: string;
}

export interface RunningMaster {
  /** The public URL when one was given, else the listener's. */
  url: string;
  database: Database;
  /** The admin's client config, when this start created the admin. */
  adminConfigPath: string;
  close(): Promise<void>;
}

/** A restart may listen elsewhere (another port, or a restored master): keep admin.json pointing at it. */
async function refreshAdminConfigUrl(path: string, url: string): Promise<void> {
  const text = await readFile(path, "utf8").catch(() => undefined);
  if (!text) return;
  const config = JSON.parse(text) as ClientConfig;
  if (config.url === url) return;
  await writePrivateFile(path, `${JSON.stringify({ ...config, url }, null, 2)}\n`);
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** A public URL's host (an IPv6 address without its brackets) and its canonical form. */
function parsePublicUrl(text: string): { url: string; host: string } {
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new Error(`the public URL '${text}' is not a URL`);
  }
  if (parsed.protocol !== "https:" || parsed.pathname !== "/" || parsed.search || parsed.username) {
    throw new Error(`the public URL '${text}' must be https://HOST[:PORT]/, with no path, query or user`);
  }
  return { url: parsed.toString(), host: parsed.hostname.replace(/^\[(.*)\]$/, "$1") };
}

export async function startMaster(options: MasterOptions): Promise<RunningMaster> {
  const host = options.host ?? "127.0.0.1";
  const publicUrl = options.publicUrl === undefined ? undefined : parsePublicUrl(options.publicUrl);
  const logger = options.logger ?? pino({ name: "slap-master", redact: LOG_REDACTION });
  if (options.insecureHttp && publicUrl) {
    throw new Error("--insecure-http serves loopback only: it takes no public URL");
  }
  if (options.insecureHttp && !LOOPBACK.has(host)) {
    throw new Error(
      `--insecure-http serves without any identity check, so it only listens on loopback (127.0.0.1, ::1); not on ${host}`,
    );
  }
  await secureDataDir(options.dataDir);
  const releaseDataDir = options.databaseUrl
    ? async () => {}
    : await claimDataDir(options.dataDir, "start of this master");
  const database = await openDatabase({ databaseUrl: options.databaseUrl, dataDir: options.dataDir });
  // A first start has just copied PGlite's initial cluster in, world-readable.
  await secureDataDir(options.dataDir);
  logger.info(
    {
      database:
        database.kind === "postgres" ? redactUrl(options.databaseUrl ?? "") : join(options.dataDir, "pglite"),
    },
    "database ready",
  );
  const authority = await loadOrCreateAuthority(database.db);
  const desiredStates = new DesiredStates(database.db);
  const unlisten = await database.onDesiredStateChange((computerId) => desiredStates.notify(computerId));

  let adminId = await findAdmin(database.db);
  let newAdmin: Awaited<ReturnType<typeof createPerson>> | undefined;
  if (!adminId) {
    newAdmin = await createPerson(database.db, authority, "bootstrap", { name: "admin", isAdmin: true });
    adminId = newAdmin.personId;
    logger.info({ personId: adminId }, "created the admin person");
  }

  const services: MasterServices = {
    db: database.db,
    authority,
    desiredStates,
    logger,
    ...(options.insecureHttp ? { insecureAdminId: adminId } : {}),
  };
  const listener = getRequestListener(createMasterApp(services).fetch);
  let server: Server;
  if (options.insecureHttp) {
    server = createHttpServer(listener);
  } else {
    const names = [
      ...new Set(
        [host, ...(publicUrl ? [publicUrl.host] : []), "localhost", "127.0.0.1", "::1"].filter(
          (name) => name !== "0.0.0.0" && name !== "::",
        ),
      ),
    ];
    const tls = issueServerCertificate(authority, names);
    server = createHttpsServer(
      {
        // The CA goes with the server's certificate: an instance of this master, which holds its
        // own certificate but not the CA's, takes the CA that signed its certificate from there
        // before it trusts the server (examples/software/master).
        cert: tls.certificatePem + authority.certificatePem,
        key: tls.privateKeyPem,
        ca: authority.certificatePem,
        // Checked per request instead, so a caller without a certificate gets a useful 401.
        requestCert: true,
        rejectUnauthorized: false,
      },
      listener,
    );
  }
  // Long polls hold requests for up to 300 s.
  server.requestTimeout = 330_000;
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const displayHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host;
  const listenerUrl = `${options.insecureHttp ? "http" : "https"}://${displayHost.includes(":") ? `[${displayHost}]` : displayHost}:${port}/`;
  const url = publicUrl?.url ?? listenerUrl;

  const adminConfigPath = join(options.dataDir, "admin.json");
  if (newAdmin) {
    const config: ClientConfig = {
      url,
      personId: newAdmin.personId,
      ...(options.insecureHttp
        ? {}
        : { ca: authority.certificatePem, certificate: newAdmin.certificate, key: newAdmin.privateKey }),
    };
    await writePrivateFile(adminConfigPath, `${JSON.stringify(config, null, 2)}\n`);
  } else {
    await refreshAdminConfigUrl(adminConfigPath, url);
  }
  logger.info({ url, listener: listenerUrl, insecure: Boolean(options.insecureHttp) }, "master listening");

  return {
    url,
    database,
    adminConfigPath,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      });
      await unlisten();
      await database.close();
      // Postgres writes some files (statistics) at shutdown, which PGlite makes 0644.
      await secureDataDir(options.dataDir);
      await releaseDataDir();
      logger.info("master stopped");
    },
  };
}
