#!/usr/bin/env node
import { Command } from "commander";
import { registerNodeCommands } from "../cli/commands/node.js";

// The agent's own entry point: only `node ...` commands, so that the file the bootstrapper copies
// to a node (dist/agent/slap-node.mjs, one bundled file) carries nothing of the master.
const program = new Command("slap-node").description("the SlapOS node agent (slap node ...)");
registerNodeCommands(program);

try {
  await program.parseAsync();
} catch (error) {
  console.error(`slap-node: ${(error as Error).message}`);
  process.exitCode = 1;
}
