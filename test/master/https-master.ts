import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { Agent, request } from "undici";
import { type RunningMaster, startMaster } from "../../master/server.js";
import { MasterApiError, MasterClient } from "../../protocol/client.js";
import { createPostgresDatabase, type TestDatabaseKind } from "../support/databases.js";

/** A master over HTTPS on one database kind, and clients holding its certificates. */
export interface HttpsMaster {
  master: RunningMaster;
  admin: MasterClient;
  /** A client presenting this certificate (none: anonymous). */
  client(certificate?: string, key?: string): MasterClient;
  /** A person's client. */
  person(name: string): Promise<{ id: string; client: MasterClient }>;
  /** A registered computer owned by `owner`, its node's client, with these partitions uploaded. */
  node(owner: MasterClient, references: string[]): Promise<{ id: string; client: MasterClient }>;
  /**
   * A SLAP API call with this client's certificate: form fields posted (or, for GET, sent as the
   * query string); status and text.
   */
  slap(
    from: MasterClient,
    path: string,
    fields: Record<string, string>,
    options?: { method?: "GET" | "POST"; headers?: Record<string, string> },
  ): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

export async function startHttpsMaster(kind: TestDatabaseKind): Promise<HttpsMaster> {
  const dataDir = await mkdtemp(join(tmpdir(), "slap-master-"));
  let dropDatabase = async () => {};
  let databaseUrl: string | undefined;
  if (kind.name === "postgres") {
    // A database of its own, so runs never see each other's rows.
    const created = await createPostgresDatabase("slapos_https");
    databaseUrl = created.url;
    dropDatabase = created.drop;
  }
  const master = await startMaster({ dataDir, databaseUrl, port: 0, logger: pino({ level: "silent" }) });
  const config = JSON.parse(await readFile(master.adminConfigPath, "utf8"));
  const clients: MasterClient[] = [];
  const client = (certificate?: string, key?: string) => {
    const created = new MasterClient({ url: master.url, ca: config.ca, certificate, key });
    clients.push(created);
    return created;
  };
  const admin = client(config.certificate, config.key);
  return {
    master,
    admin,
    client,
    async person(name) {
      const identity = await admin.createPerson({ name });
      return { id: identity.personId, client: client(identity.certificate, identity.privateKey) };
    },
    async node(owner, references) {
      const registration = await client().register((await owner.createRegistrationToken()).token);
      const node = client(registration.certificate, registration.privateKey);
      await node.uploadPartitions(
        registration.computerId,
        references.map((reference) => ({ reference, addresses: [] })),
      );
      return { id: registration.computerId, client: node };
    },
    async slap(from, path, fields, options = {}) {
      const { ca, certificate, key } = from.connection;
      const dispatcher = new Agent({ connect: { ca, cert: certificate, key } });
      const encoded = new URLSearchParams(fields).toString();
      try {
        const response = await request(
          options.method === "GET" ? new URL(`${path}?${encoded}`, master.url) : new URL(path, master.url),
          {
            method: options.method ?? "POST",
            ...(options.method === "GET" ? {} : { body: encoded }),
            headers: { "content-type": "application/x-www-form-urlencoded", ...options.headers },
            dispatcher,
          },
        );
        return { status: response.statusCode, text: await response.body.text() };
      } finally {
        await dispatcher.close();
      }
    },
    async close() {
      for (const each of clients) await each.close();
      await master.close();
      await dropDatabase();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The master's refusal of this call (fails the test when the call succeeds). */
export async function refusal(promise: Promise<unknown>): Promise<MasterApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof MasterApiError) return error;
    throw error;
  }
  throw new Error("expected the master to refuse");
}
