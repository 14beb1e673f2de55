import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Test hosts, Pulumi stacks and buildouts are real: allow them time, never assert on it.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: "forks",
  },
});
