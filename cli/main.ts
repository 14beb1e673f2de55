#!/usr/bin/env node
import { Command } from "commander";
import { registerBootstrapCommand } from "./commands/bootstrap.js";
import { registerMasterCommands } from "./commands/master.js";
import { registerNodeCommands } from "./commands/node.js";
import { formatReport, inspectComponents, loadSetupEnvironment } from "./doctor.js";

const program = new Command("slap")
  .description("SlapOS in TypeScript: master, node agent, SSH bootstrap and Pulumi provider")
  .option("--json", "machine-readable output");

program
  .command("doctor")
  .description("find every real component this project drives and print its version")
  .action(async () => {
    const loaded = await loadSetupEnvironment();
    if (loaded && !program.opts().json) console.log(`with the environment scripts/setup.sh wrote: ${loaded}`);
    const reports = await inspectComponents();
    if (program.opts().json) console.log(JSON.stringify(reports, null, 2));
    else console.log(`components:\n${formatReport(reports)}`);
    if (reports.some((report) => !report.version && !report.optional)) {
      console.error("some components are missing: run 'bash scripts/setup.sh' (as root for all of them)");
      process.exitCode = 1;
    }
  });

registerMasterCommands(program);
registerNodeCommands(program);
registerBootstrapCommand(program);

try {
  await program.parseAsync();
} catch (error) {
  console.error(`slap: ${(error as Error).message}`);
  process.exitCode = 1;
}
