// Bundles the node agent (slave/main.ts, built as dist/slave/main.js) into one file,
// dist/agent/slap-node.mjs: what the bootstrapper copies to a node, with no node_modules there.
import { build } from "esbuild";

await build({
  entryPoints: ["dist/slave/main.js"],
  outfile: "dist/agent/slap-node.mjs",
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  // Some dependencies still call require(): give the ES module one.
  banner: {
    js: "import { createRequire as __slapRequire } from 'node:module'; const require = __slapRequire(import.meta.url);",
  },
  legalComments: "none",
  logLevel: "warning",
});
