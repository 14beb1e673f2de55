import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { MasterClient } from "../protocol/client.js";
import { keepCertificateRenewed } from "./certificate-renewal.js";
import type { NodeConfig } from "./config.js";
import type { AgentContext } from "./context.js";
import { settleCredentialFiles } from "./credential-files.js";
import { PartitionCgroups } from "./isolation/cgroups.js";
import { acquireAgentLock } from "./lock.js";
import type { RunUser } from "./run-as.js";
import { Supervisor } from "./supervisor/index.js";

async function readOptional(path: string | undefined): Promise<string | undefined> {
  if (!path) return undefined;
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read ${path}: ${(error as Error).message}; check the node configuration`);
  }
}

/** The master as this computer: its certificate, checked against the master's CA. */
export async function connectToMaster(config: NodeConfig): Promise<MasterClient> {
  // A renewal cut short by a stop leaves its new files beside the live ones: finish it first.
  if (config.certFile && config.keyFile) {
    await settleCredentialFiles({ certFile: config.certFile, keyFile: config.keyFile });
  }
  return new MasterClient({
    url: config.masterUrl,
    certificate: await readOptional(config.certFile),
    key: await readOptional(config.keyFile),
    ca: await readOptional(config.masterCaFile),
  });
}

/** Software buildouts run as the owner of software_root (`slapsoft`), as slapgrid does. */
async function softwareUserOf(config: NodeConfig): Promise<RunUser> {
  if (!config.format.alterUser) return null;
  const owner = await stat(config.softwareRoot).catch(() => {
    throw new Error(`${config.softwareRoot} does not exist: run 'slap node format' first`);
  });
  if (owner.uid === 0) {
    throw new Error(
      `${config.softwareRoot} belongs to root; buildout never runs as root: run 'slap node format'`,
    );
  }
  return { uid: owner.uid, gid: owner.gid };
}

export interface Agent {
  context: AgentContext;
  release: () => Promise<void>;
}

/**
 * Without user switching, releases' code runs as the agent: as root, only when the configuration
 * says so, and never silently.
 */
function checkRootInstances(config: NodeConfig, logger: Logger): void {
  if (config.format.alterUser || process.getuid?.() !== 0) return;
  if (!config.format.allowRootInstances) {
    throw new Error(
      "[slapformat] alter_user = false makes the agent run every release's code (builds, instances, promises) as root: " +
        "set alter_user = true to run it as partition users, or, in a container whose root is not the host's, allow_root_instances = true",
    );
  }
  logger.warn("alter_user = false and allow_root_instances = true: releases' code runs as root");
}

/** Takes the node's agent lock and connects everything a pass needs. */
export async function openAgent(config: NodeConfig, logger: Logger): Promise<Agent> {
  checkRootInstances(config, logger);
  const release = await acquireAgentLock(join(config.instanceRoot, "var", "run", "slap-agent.pid"));
  try {
    const context: AgentContext = {
      config,
      logger,
      client: await connectToMaster(config),
      supervisor: new Supervisor({
        instanceRoot: config.instanceRoot,
        pythonEnvironment: config.pythonEnvironment,
        logger,
      }),
      softwareUser: await softwareUserOf(config),
      cgroups: await PartitionCgroups.detect({
        // One directory per computer: agents sharing a kernel (containers) never share cgroups.
        name: `${config.cgroupName}.${config.computerId}`,
        limits: config.partitionLimits,
        logger,
      }),
    };
    // Under the agent lock: one process at a time replaces the certificate files.
    const renewal = keepCertificateRenewed(config, context.client, logger);
    return {
      context,
      release: async () => {
        await renewal.stop();
        await context.client.close();
        await release();
      },
    };
  } catch (error) {
    await release();
    throw error;
  }
}
