import { resolve } from "node:path";
import { defineConfig, type TestProjectInlineConfiguration } from "vitest/config";
import { forksOnNode } from "./test/support/node-pool.js";

/** Files that run a second time on the newest Node and the newest @pulumi/pulumi of the peer range. */
const NEWEST_PAIR_FILES = ["test/pulumi/provider.test.ts"];

/**
 * The provider's end-to-end test on Node 24 with the newest SDK (scripts/setup.sh installs both):
 * the sources' `@pulumi/pulumi` imports resolve to that SDK, and the test files run on that Node.
 */
function newestPair(): TestProjectInlineConfiguration[] {
  const node = process.env.SLAPOS_NODE24;
  const sdk = process.env.SLAPOS_NEWEST_PULUMI_SDK;
  if (!node || !sdk) {
    console.warn(
      "skipping the project 'node24-newest-sdk': needs $SLAPOS_NODE24 and $SLAPOS_NEWEST_PULUMI_SDK (scripts/setup.sh sets them)",
    );
    return [];
  }
  return [
    {
      extends: true,
      resolve: { alias: [{ find: /^@pulumi\/pulumi(?=\/|$)/, replacement: sdk }] },
      test: {
        name: "node24-newest-sdk",
        include: NEWEST_PAIR_FILES,
        pool: forksOnNode("node24-newest-sdk", node),
        // The engine's plugin for dynamic resources runs this SDK too (test/support/pulumi-resource-pulumi-nodejs).
        env: { SLAPOS_TEST_PAIR: "newest", SLAPOS_DYNAMIC_PROVIDER_SDK: sdk },
      },
    },
  ];
}

export default defineConfig({
  // Examples import the package by its name, as users do (tsconfig.json's paths say the same).
  resolve: { alias: { "pulumi-slapos": resolve("provider/index.ts") } },
  test: {
    // Test hosts, Pulumi stacks and buildouts are real: allow them time, never assert on it.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    projects: [
      { extends: true, test: { name: "main", include: ["test/**/*.test.ts"], pool: "forks" } },
      ...newestPair(),
    ],
  },
});
