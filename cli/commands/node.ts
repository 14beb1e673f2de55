import { access, chmod, mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { Command } from "commander";
import pino, { type Logger } from "pino";
import { connectToMaster, openAgent } from "../../slave/agent.js";
import { type NodeConfig, readNodeConfig, writeComputerId } from "../../slave/config.js";
import type { AgentContext } from "../../slave/context.js";
import { replaceCredentialFiles } from "../../slave/credential-files.js";
import { DesiredStateCache } from "../../slave/desired-state-cache.js";
import { formatNode } from "../../slave/format/index.js";
import { runLoop } from "../../slave/loop.js";
import { fullPass, instancePass, SoftwareReporter, softwarePass } from "../../slave/pass.js";
import { sendUsage, usageMeter } from "../../slave/usage.js";
import { readToken } from "../token.js";

const DEFAULT_CONFIG = "/etc/opt/slapos/slapos.cfg";

interface NodeOptions {
  config: string;
  logLevel: string;
}

function nodeLogger(options: NodeOptions): Logger {
  return pino({ name: "slap-node", level: options.logLevel }, pino.destination(2));
}

/** Runs one step with the agent lock held and the master connected. */
async function withAgent<T>(options: NodeOptions, step: (context: AgentContext) => Promise<T>): Promise<T> {
  const config = await readNodeConfig(options.config);
  const agent = await openAgent(config, nodeLogger(options));
  try {
    return await step(agent.context);
  } finally {
    await agent.release();
  }
}

/** The desired state now, kept for offline starts. */
async function currentState(context: AgentContext) {
  const state = await context.client.desiredState(context.config.computerId);
  await new DesiredStateCache(context.config.desiredStateCache).save(state);
  return state;
}

async function writeSecretFile(path: string, content: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeFile(path, content, { mode });
  await chmod(path, mode);
}

async function register(config: NodeConfig, token: string, title: string | undefined, logger: Logger) {
  if (!config.certFile || !config.keyFile) {
    throw new Error(
      `${config.path}: set [slapos] cert_file and key_file: registration writes the computer's certificate there`,
    );
  }
  const client = await connectToMaster({ ...config, certFile: undefined, keyFile: undefined });
  try {
    const registration = await client.register(token, title);
    if (config.computerId && registration.computerId !== config.computerId) {
      throw new Error(
        `the token registers computer ${registration.computerId}, but ${config.path} says computer_id = ${config.computerId}: use a token created for ${config.computerId}, or remove computer_id to register a new computer`,
      );
    }
    await replaceCredentialFiles(
      { certFile: config.certFile, keyFile: config.keyFile },
      { certificate: registration.certificate, privateKey: registration.privateKey },
    );
    if (config.masterCaFile) {
      const present = await access(config.masterCaFile).then(
        () => true,
        () => false,
      );
      if (!present) await writeSecretFile(config.masterCaFile, registration.caCertificate, 0o644);
    }
    if (!config.computerId) await writeComputerId(config.path, registration.computerId);
    logger.info({ computerId: registration.computerId, certFile: config.certFile }, "registered");
  } finally {
    await client.close();
  }
}

/** `slap node register|format|software|instance|report|run`: the node agent (SlapGRID). */
export function registerNodeCommands(program: Command): void {
  const node = program
    .command("node")
    .description("the node agent: format partitions, install software, run instances");
  const withConfig = (command: Command) =>
    command
      .option(
        "--config <file>",
        "the node configuration (INI, SlapOS key names)",
        process.env.SLAP_NODE_CONFIG ?? DEFAULT_CONFIG,
      )
      .option("--log-level <level>", "pino log level", "info");

  withConfig(node.command("register"))
    .description(
      "register this node with the master using a one-time token; writes the computer's certificate, and its id when the configuration has none",
    )
    .option(
      "--token-file <file>",
      "a file holding the registration token the master's owner created; - reads it from standard input",
    )
    .option(
      "--token <token>",
      "the registration token itself (visible to other users of this host while it runs: prefer --token-file)",
    )
    .option("--title <title>", "the computer's title")
    .action(async (options: NodeOptions & { token?: string; tokenFile?: string; title?: string }) => {
      const token = await readToken(options, { required: true });
      const config = await readNodeConfig(options.config, { registering: true });
      await register(config, token, options.title, nodeLogger(options));
    });

  withConfig(node.command("format"))
    .description(
      "create the partitions (users, directories, addresses, taps) and send their layout to the master",
    )
    .action(async (options: NodeOptions) => {
      const config = await readNodeConfig(options.config);
      const logger = nodeLogger(options);
      const result = await formatNode(config, logger);
      const client = await connectToMaster(config);
      try {
        await client.uploadPartitions(
          config.computerId,
          result.partitions.map((partition) => ({
            reference: partition.reference,
            addresses: partition.addresses.map((address) => ({
              interface: config.format.interfaceName,
              ...address,
            })),
            tap: partition.tap,
          })),
        );
      } finally {
        await client.close();
      }
      logger.info(
        { partitions: result.partitions.length, changes: result.changed.length },
        "formatted and sent the layout",
      );
    });

  withConfig(node.command("software"))
    .description("install and remove software releases as the master asks, once")
    .action(async (options: NodeOptions) => {
      await withAgent(options, async (context) => {
        const counts = await softwarePass(
          context,
          await currentState(context),
          new SoftwareReporter(context),
        );
        if ((counts.failed ?? 0) > 0) process.exitCode = 1;
      });
    });

  withConfig(node.command("instance"))
    .description("deploy, stop and destroy instances as the master asks, once")
    .action(async (options: NodeOptions) => {
      await withAgent(options, async (context) => {
        const counts = await instancePass(context, await currentState(context));
        if ((counts.failed ?? 0) > 0) process.exitCode = 1;
      });
    });

  withConfig(node.command("report"))
    .description("send the partitions' resource usage since the last report")
    .action(async (options: NodeOptions) => {
      await withAgent(options, async (context) => {
        const records = await sendUsage(context, usageMeter(context));
        context.logger.info({ records }, "usage reported");
      });
    });

  withConfig(node.command("run"))
    .description("the agent: act on every change of the master's desired state until stopped")
    .option("--once", "one full pass, then exit (1 if anything failed)")
    .action(async (options: NodeOptions & { once?: boolean }) => {
      await withAgent(options, async (context) => {
        if (options.once) {
          const result = await fullPass(context, await currentState(context), new SoftwareReporter(context));
          if (result.failed) process.exitCode = 1;
          return;
        }
        const controller = new AbortController();
        const stop = (signal: string) => {
          context.logger.info({ signal }, "stopping the agent (instances keep running)");
          controller.abort();
        };
        process.once("SIGINT", () => stop("SIGINT"));
        process.once("SIGTERM", () => stop("SIGTERM"));
        await runLoop(context, { signal: controller.signal });
      });
    });
}
