import { Command } from "commander";
import { registerMasterCommands } from "../../../cli/commands/master.js";
import { registerInstanceCommands } from "./instance.js";

// The program of the master release (scripts/bundle-master.mjs bundles it into slap-master.mjs):
// `slap master` without the node agent, the bootstrapper or Pulumi, plus the steps of the
// release's instances.

const program = new Command("slap-master")
  .description("the SlapOS master of the master software release")
  // The bundle has the package's version written in (scripts/bundle-master.mjs).
  .version(process.env.SLAP_MASTER_VERSION ?? "unbundled");
registerMasterCommands(program);
registerInstanceCommands(program);

try {
  await program.parseAsync();
} catch (error) {
  console.error(`slap-master: ${(error as Error).message}`);
  process.exitCode = 1;
}
