import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PGlite } from "@electric-sql/pglite";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import * as schema from "./schema.js";

export type Schema = typeof schema;
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
/** A transaction or the database itself: model functions take either. */
export type Executor = Parameters<Parameters<Db["transaction"]>[0]>[0] | Db;

/** Raw `execute` results: postgres.js gives an array of rows, PGlite an object with `rows`. */
export type Rows<T> = T[] | { rows: T[] };
export const rowsOf = <T>(result: Rows<T>): T[] => (Array.isArray(result) ? result : result.rows);

/** Channel on which a committed change to a computer's desired state is announced. */
export const DESIRED_STATE_CHANNEL = "slapos_desired_state";

export interface Database {
  db: Db;
  /** `postgres` for a server, `pglite` for the embedded default. */
  kind: "postgres" | "pglite";
  /** Calls `listener(computerId)` after each committed desired-state change, from any master process. */
  onDesiredStateChange(listener: (computerId: string) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** A Postgres server (`postgres://...`); without it, PGlite in `dataDir`. */
  databaseUrl?: string;
  /** Where PGlite keeps its files; without it (and without a URL), an in-memory database. */
  dataDir?: string;
}

const migrationsFolder = fileURLToPath(new URL("./migrations", import.meta.url));
// Any constant: serializes concurrent migrations of masters starting together on one server.
const MIGRATION_LOCK = 727_001;

/** Opens the database and brings its schema up to date. */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.databaseUrl ? openPostgres(options.databaseUrl) : openPglite(options.dataDir);
}

async function openPostgres(url: string): Promise<Database> {
  const client = postgres(...postgresArguments(url));
  const db = drizzlePostgres(client, { schema }) as unknown as Db;
  try {
    const lock = await client.reserve();
    try {
      await lock`select pg_advisory_lock(${MIGRATION_LOCK})`;
      await migratePostgres(drizzlePostgres(client, { schema }), { migrationsFolder });
    } finally {
      await lock`select pg_advisory_unlock(${MIGRATION_LOCK})`;
      lock.release();
    }
  } catch (error) {
    await client.end({ timeout: 1 });
    throw new Error(`cannot open the Postgres database at ${redactUrl(url)}: ${(error as Error).message}`);
  }
  return {
    db,
    kind: "postgres",
    async onDesiredStateChange(listener) {
      const subscription = await client.listen(DESIRED_STATE_CHANNEL, (payload) => listener(payload));
      return () => subscription.unlisten();
    },
    close: () => client.end({ timeout: 5 }),
  };
}

async function openPglite(dataDir: string | undefined): Promise<Database> {
  let directory: string | undefined;
  if (dataDir) {
    directory = join(dataDir, "pglite");
    await mkdir(directory, { recursive: true });
  }
  const client = new PGlite(directory);
  const db = drizzlePglite(client, { schema }) as unknown as Db;
  await migratePglite(drizzlePglite(client, { schema }), { migrationsFolder });
  return {
    db,
    kind: "pglite",
    async onDesiredStateChange(listener) {
      return client.listen(DESIRED_STATE_CHANNEL, listener);
    },
    close: () => client.close(),
  };
}

/**
 * Connection arguments for postgres.js, accepting libpq's `?host=/socket/dir` for a server on a
 * Unix socket (cheaper than TCP when the master runs beside Postgres).
 */
export function postgresArguments(
  url: string,
): [string, postgres.Options<Record<string, postgres.PostgresType>>] {
  const options = { max: 20, onnotice: () => {} };
  const parsed = new URL(url);
  const socketDirectory = parsed.searchParams.get("host");
  if (!socketDirectory?.startsWith("/")) return [url, options];
  parsed.searchParams.delete("host");
  return [parsed.toString(), { ...options, host: socketDirectory }];
}

/** A database URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}
