// Bundles the node agent (slave/main.ts, built as dist/slave/main.js) into one file,
// dist/agent/slap-node.mjs: what the bootstrapper copies to a node, with no node_modules there.
import { bundleForNode } from "./node-bundle.mjs";

await bundleForNode("dist/slave/main.js", "dist/agent/slap-node.mjs");
