import { sql } from "drizzle-orm";
import { type Database, type Rows, rowsOf } from "./db/connect.js";

/**
 * Every table of the master, parents before children. The CA lives in `authority`, so a dump of
 * these is the whole state: nodes and instances can be rebuilt from it.
 */
const TABLES = [
  "organisations",
  "persons",
  "organisation_members",
  "computers",
  "partitions",
  "software_installations",
  "software_instances",
  "contracts",
  "usage_records",
  "authority",
  "certificates",
  "registration_tokens",
] as const;

/** Tables whose `id` is an identity column: their sequence continues after the restored rows. */
const IDENTITY_TABLES = new Set(["partitions", "contracts", "usage_records"]);

export interface Backup {
  format: "slapos-master-backup";
  version: 1;
  /** How many schema migrations the source had: a restore needs the same schema. */
  migrations: number;
  createdAt: string;
  tables: Record<string, unknown[]>;
  /** The admin's client config from the source data directory, when it had one. */
  adminConfig?: unknown;
}

async function migrationCount(database: Database): Promise<number> {
  const result = await database.db.execute<{ count: number }>(
    sql`select count(*)::int as count from drizzle.__drizzle_migrations`,
  );
  return Number(rowsOf(result as Rows<{ count: number }>)[0]?.count ?? 0);
}

/** A consistent snapshot of the whole state: one repeatable-read transaction over every table. */
export async function createBackup(database: Database, adminConfig?: unknown): Promise<Backup> {
  const migrations = await migrationCount(database);
  const tables: Record<string, unknown[]> = {};
  await database.db.transaction(
    async (tx) => {
      for (const table of TABLES) {
        const result = await tx.execute<{ row: unknown }>(
          sql`select coalesce(json_agg(t), '[]'::json) as row from ${sql.identifier(table)} t`,
        );
        const value = rowsOf(result as Rows<{ row: unknown }>)[0]?.row;
        tables[table] = (typeof value === "string" ? JSON.parse(value) : value) as unknown[];
      }
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );
  return {
    format: "slapos-master-backup",
    version: 1,
    migrations,
    createdAt: new Date().toISOString(),
    tables,
    ...(adminConfig === undefined ? {} : { adminConfig }),
  };
}

/**
 * Loads a backup into an empty, migrated database, in one transaction: either everything is
 * restored or nothing is. Refuses a database that already holds a master's state.
 */
export async function restoreBackup(database: Database, backup: Backup): Promise<Record<string, number>> {
  if (backup?.format !== "slapos-master-backup" || backup.version !== 1) {
    throw new Error("this file is not a slap master backup (format slapos-master-backup, version 1)");
  }
  const migrations = await migrationCount(database);
  if (backup.migrations !== migrations) {
    throw new Error(
      `the backup was taken with ${backup.migrations} schema migrations, this master has ${migrations}: restore with the same version of pulumi-slapos`,
    );
  }
  const counts: Record<string, number> = {};
  await database.db.transaction(async (tx) => {
    const existing = await tx.execute<{ count: number }>(
      sql`select (select count(*) from persons) + (select count(*) from authority) as count`,
    );
    if (Number(rowsOf(existing as Rows<{ count: number }>)[0]?.count ?? 0) > 0) {
      throw new Error(
        "the target database already holds a master's state: restore into a new data directory or database",
      );
    }
    for (const table of TABLES) {
      const rows = backup.tables[table] ?? [];
      counts[table] = rows.length;
      if (rows.length === 0) continue;
      const name = sql.identifier(table);
      const overriding = IDENTITY_TABLES.has(table) ? sql`overriding system value` : sql``;
      await tx.execute(
        sql`insert into ${name} ${overriding} select * from json_populate_recordset(null::${name}, ${JSON.stringify(rows)}::json)`,
      );
      if (IDENTITY_TABLES.has(table)) {
        await tx.execute(
          sql`select setval(pg_get_serial_sequence(${table}, 'id'), (select max(id) from ${name}))`,
        );
      }
    }
  });
  return counts;
}
