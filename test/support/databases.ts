import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { type Database, openDatabase } from "../../master/db/connect.js";
import { type Requirement, requires } from "./requirements.js";

/** A database the master test suites run against: each suite runs on both. */
export interface TestDatabaseKind {
  name: "pglite" | "postgres";
  requirements: Requirement[];
  /** A fresh, empty, migrated database; `dispose` drops it. */
  open(): Promise<Database & { dispose(): Promise<void> }>;
}

export const testDatabaseKinds: TestDatabaseKind[] = [
  {
    name: "pglite",
    requirements: [],
    async open() {
      const database = await openDatabase({});
      return { ...database, dispose: () => database.close() };
    },
  },
  {
    name: "postgres",
    requirements: [requires.env("TEST_DATABASE_URL", "a real Postgres server")],
    async open() {
      const created = await createPostgresDatabase("slapos_test");
      const database = await openDatabase({ databaseUrl: created.url });
      return {
        ...database,
        async dispose() {
          await database.close();
          await created.drop();
        },
      };
    },
  },
];

/** A new, empty database on the test Postgres server ($TEST_DATABASE_URL), and how to drop it. */
export async function createPostgresDatabase(
  prefix: string,
): Promise<{ url: string; drop(): Promise<void> }> {
  const serverUrl = process.env.TEST_DATABASE_URL ?? "";
  const name = `${prefix}_${randomBytes(6).toString("hex")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
    },
  };
}
