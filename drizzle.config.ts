import { defineConfig } from "drizzle-kit";

// `npx drizzle-kit generate` writes a new migration after a change to master/db/schema.ts.
export default defineConfig({
  dialect: "postgresql",
  schema: "./master/db/schema.ts",
  out: "./master/db/migrations",
});
