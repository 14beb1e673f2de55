// How this package bundles a program into one ES module file that a host runs with Node alone
// (the agent, the master release): esbuild, for Node 20, with a require() for dependencies that
// still call it.
import { build } from "esbuild";

export function bundleForNode(entryPoint, outfile, options = {}) {
  return build({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    banner: {
      js: "import { createRequire as __slapRequire } from 'node:module'; const require = __slapRequire(import.meta.url);",
    },
    legalComments: "none",
    logLevel: "warning",
    ...options,
  });
}
