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
      const serverUrl = process.env.TEST_DATABASE_URL ?? "";
      const name = `slapos_test_${randomBytes(6).toString("hex")}`;
      const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await admin.unsafe(`create database ${name}`);
      const url = new URL(serverUrl);
      url.pathname = `/${name}`;
      const database = await openDatabase({ databaseUrl: url.toString() });
      return {
        ...database,
        async dispose() {
          await database.close();
          await admin.unsafe(`drop database if exists ${name} with (force)`);
          await admin.end();
        },
      };
    },
  },
];
