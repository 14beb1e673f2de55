import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { MasterApiError } from "../../protocol/client.js";
import type { AgentContext } from "../context.js";
import { ConfinedDirectory, type Ownership } from "../isolation/confined-directory.js";
import { type LocalPartition, RESOURCE_FILE } from "../partitions.js";
import { checkPromises } from "../promise.js";
import { groupPidFile, type RunUser, runAs, SYSTEM_PATH, tail } from "../run-as.js";
import { buildoutCommand, isInstalled, softwarePath } from "../software.js";
import { buildoutTail, INSTANCE_FILE, instanceData, PUBLISH_FILE } from "./buildout-profile.js";
import { AGENT_UID, inPartition, readMark, TIMESTAMP_FILE, writeMark } from "./partition-files.js";
import type { DesiredPartition, PartitionInstance } from "./types.js";

/** The largest instance.cfg a release may give, and the largest publish file an instance may write. */
const MAX_PROFILE_BYTES = 4 * 1024 * 1024;
const MAX_PUBLISH_BYTES = 1024 * 1024;

/** An instance to deploy, with its partition's extras (they shape its buildout tail). */
interface DesiredInstance {
  instance: PartitionInstance;
  extras: DesiredPartition["extras"];
}

export type DeployOutcome = "unchanged" | "deployed" | "stopped" | "destroyed" | "failed" | "free";

/** Who the partition's buildout and processes run as: its owner, or the agent itself without user switching. */
function partitionUser(context: AgentContext, partition: LocalPartition): RunUser {
  return context.config.format.alterUser ? { uid: partition.user.uid, gid: partition.user.gid } : null;
}

/** Who owns the files the agent writes for the partition: its user, or the agent without user switching. */
function ownerOf(user: RunUser): Ownership | undefined {
  return user ?? undefined;
}

async function writeCredentials(
  context: AgentContext,
  partition: LocalPartition,
  instance: PartitionInstance,
) {
  const directory = context.config.certificateRepositoryPath;
  await mkdir(directory, { recursive: true, mode: 0o711 });
  const credentials = await context.client.instanceCredentials(instance.id);
  const files = {
    certFile: join(directory, `${partition.reference}.crt`),
    keyFile: join(directory, `${partition.reference}.key`),
  };
  const owner = ownerOf(partitionUser(context, partition));
  await ConfinedDirectory.with(directory, async (repository) => {
    await repository.writeIfChanged(`${partition.reference}.crt`, credentials.certificate, {
      mode: 0o400,
      owner,
    });
    await repository.writeIfChanged(`${partition.reference}.key`, credentials.privateKey, {
      mode: 0o400,
      owner,
    });
  });
  return files;
}

async function removeCredentials(context: AgentContext, partition: LocalPartition): Promise<void> {
  await ConfinedDirectory.with(context.config.certificateRepositoryPath, async (repository) => {
    for (const extension of ["crt", "key"]) await repository.remove(`${partition.reference}.${extension}`);
  }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}

/**
 * What the profile asked to publish, if it wrote the publish file: a regular file of the
 * partition's user, bounded. Its content is never quoted back: a link or hard link to another
 * tenant's file must not carry that file to the master in an error either.
 */
async function publishedParameters(
  partition: LocalPartition,
  user: RunUser,
): Promise<Record<string, string> | null> {
  const text = await inPartition(partition, (directory) =>
    directory.read(PUBLISH_FILE, { maxBytes: MAX_PUBLISH_BYTES, owners: [user?.uid ?? AGENT_UID] }),
  );
  if (text === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${PUBLISH_FILE} is not valid JSON: it must hold a JSON object of strings`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${PUBLISH_FILE} must hold a JSON object of strings`);
  }
  return Object.fromEntries(Object.entries(parsed).map(([key, value]) => [key, String(value)]));
}

async function runInstanceBuildout(context: AgentContext, partition: LocalPartition): Promise<void> {
  const user = partitionUser(context, partition);
  const confine = await confinement(context, partition);
  const result = await runAs(
    user,
    buildoutCommand(context.config),
    ["-U", "-c", join(partition.path, "buildout.cfg")],
    {
      cwd: partition.path,
      env: {
        PATH: SYSTEM_PATH,
        HOME: partition.path,
        USER: partition.user.name,
        LOGNAME: partition.user.name,
        LANG: "C.UTF-8",
        PYTHONNOUSERSITE: "true",
      },
      timeoutMs: context.config.partitionTimeoutSeconds * 1000,
      pidFile: groupPidFile(context.config.instanceRoot, `buildout-${partition.reference}`),
      confine,
    },
  );
  const output = result.output;
  // For the partition's user to read; one who put a link in its way only loses its log.
  await inPartition(partition, (directory) =>
    directory.write(".slapgrid/log/instance.log", output, { mode: 0o640, owner: ownerOf(user) }),
  ).catch((error) =>
    context.logger.warn(
      { partition: partition.reference, reason: error.message },
      "instance log not written",
    ),
  );
  if (result.exitCode !== 0) {
    const reason =
      result.exitCode === undefined
        ? `was killed (${result.signal ?? "timeout"})`
        : `exited ${result.exitCode}`;
    throw new Error(`instance buildout ${reason}:\n${tail(output)}`);
  }
}

/** Prepares the partition's files and runs its buildout: the part of a deployment shared by started and stopped. */
async function install(
  context: AgentContext,
  partition: LocalPartition,
  desired: DesiredInstance,
): Promise<void> {
  const { instance, extras } = desired;
  const software = softwarePath(context.config, instance.softwareReleaseUrl);
  if (!(await isInstalled(context.config, instance.softwareReleaseUrl))) {
    throw new Error(
      `software release ${instance.softwareReleaseUrl} is not installed on this node yet (see its build state)`,
    );
  }
  // The release's build (any tenant's code, as the software user) made instance.cfg: it must be
  // a regular file of that user, never a link to what root can read and the partition cannot.
  const profile = await ConfinedDirectory.with(software, (release) =>
    release.read("instance.cfg", {
      maxBytes: MAX_PROFILE_BYTES,
      owners: [context.softwareUser?.uid ?? AGENT_UID],
    }),
  );
  if (profile === null) {
    throw new Error(
      `software release ${instance.softwareReleaseUrl} has no instance.cfg: it cannot deploy instances`,
    );
  }
  const owner = ownerOf(partitionUser(context, partition));
  const credentials = await writeCredentials(context, partition, instance);
  const buildout = profile + buildoutTail(context.config, partition, instance, credentials, extras);
  await inPartition(partition, async (directory) => {
    await directory.link("software_release", software);
    await directory.writeIfChanged(
      INSTANCE_FILE,
      `${JSON.stringify(instanceData(partition, instance, extras), null, 2)}\n`,
      { mode: 0o640, owner },
    );
    await directory.writeIfChanged("buildout.cfg", buildout, { mode: 0o640, owner });
  });
  await runInstanceBuildout(context, partition);
}

/** Makes supervisord run the partition's etc/run and etc/service programs (those not running yet). */
export async function startProcesses(context: AgentContext, partition: LocalPartition): Promise<void> {
  await context.supervisor.deployPartition({
    reference: partition.reference,
    path: partition.path,
    uid: partition.user.uid,
    gid: partition.user.gid,
    userName: partition.user.name,
    confine: await confinement(context, partition),
  });
}

function confinedPartition(partition: LocalPartition) {
  return { reference: partition.reference, uid: partition.user.uid, gid: partition.user.gid };
}

/**
 * Makes the partition's cgroup match the node's limits and returns what confines a command to it:
 * buildouts, promises and services alike, so that whatever the partition runs counts against the
 * same limits and ends with it. Only root can move processes into cgroups.
 */
async function confinement(
  context: AgentContext,
  partition: LocalPartition,
): Promise<((argv: string[]) => string[]) | undefined> {
  if (AGENT_UID !== 0) return undefined;
  const confined = confinedPartition(partition);
  await context.cgroups.prepare(confined);
  return (argv) => context.cgroups.wrap(confined, argv);
}

/** Stops the partition's services and kills every process its user still has on this node. */
async function stopEverything(context: AgentContext, partition: LocalPartition): Promise<void> {
  await context.supervisor.stopPartition(partition.reference);
  if (AGENT_UID === 0) await context.cgroups.killAll(confinedPartition(partition));
}

/**
 * Reports the state of the version (timestamp) this pass deployed. The master refuses (409) a
 * report about a version replaced meanwhile: the newer desired state is on its way, and its own
 * deployment reports. That is the normal course of a quick re-request, not a failure.
 */
async function reportState(
  context: AgentContext,
  instance: PartitionInstance,
  report: { state: "started" | "stopped" | "error"; errorLog?: string },
  log: Logger,
): Promise<void> {
  try {
    await context.client.reportInstance(instance.id, { ...report, timestamp: instance.timestamp });
  } catch (error) {
    if (!(error instanceof MasterApiError && error.status === 409)) throw error;
    log.info(
      { timestamp: instance.timestamp, state: report.state, reason: error.message },
      "report not recorded: the master asks for a newer version of this instance, deployed next",
    );
  }
}

async function deploy(
  context: AgentContext,
  partition: LocalPartition,
  desired: DesiredInstance,
  log: Logger,
): Promise<DeployOutcome> {
  const { client } = context;
  const { instance } = desired;
  await install(context, partition, desired);
  const published = await publishedParameters(partition, partitionUser(context, partition));
  if (published) await client.publishConnectionParameters(instance.id, published);
  if (instance.requestedState === "stopped") {
    await stopEverything(context, partition);
    await reportState(context, instance, { state: "stopped" }, log);
    return "stopped";
  }
  await startProcesses(context, partition);
  const failures = await checkPromises(
    partition,
    partitionUser(context, partition),
    context.config.promiseTimeoutSeconds,
    await confinement(context, partition),
  );
  if (failures.length > 0) {
    throw new Error(failures.map((failure) => failure.message).join("\n"));
  }
  await reportState(context, instance, { state: "started" }, log);
  return "deployed";
}

/** Empties a partition (its `.slapos-resource` stays: format made it) so the next instance starts clean. */
function emptyPartition(partition: LocalPartition): Promise<void> {
  return inPartition(partition, (directory) => directory.empty([RESOURCE_FILE]));
}

async function destroy(
  context: AgentContext,
  partition: LocalPartition,
  instance: PartitionInstance,
): Promise<DeployOutcome> {
  // Nothing of the instance may outlive it: the next tenant of the partition has the same user.
  await stopEverything(context, partition);
  await removeCredentials(context, partition);
  await emptyPartition(partition);
  await context.supervisor.discardLogs(partition.reference);
  if (AGENT_UID === 0) await context.cgroups.remove(partition.reference);
  await context.client.reportDestroyed(instance.id);
  return "destroyed";
}

/**
 * Brings one partition to what the master wants: deploys it when its timestamp changed (started
 * or stopped), destroys it when asked. A failure is reported to the master as the instance's
 * error and leaves no `.timestamp`, so the next pass tries again. `extrasProblem`: the partition's
 * extras could not be applied (a missing block device...), so its instance fails with that error
 * until they can.
 */
export async function processPartition(
  context: AgentContext,
  partition: LocalPartition,
  desired: DesiredPartition,
  extrasProblem?: Error,
): Promise<DeployOutcome> {
  const instance = desired.instance;
  if (!instance) return "free";
  const log = context.logger.child({
    partition: partition.reference,
    instance: instance.title,
    software: instance.softwareReleaseUrl,
  });
  if (instance.requestedState === "destroyed") {
    log.info("destroying instance");
    const outcome = await destroy(context, partition, instance);
    log.info("instance destroyed, partition freed");
    return outcome;
  }
  const timestamp = String(instance.timestamp);
  if (!extrasProblem && (await readMark(partition, TIMESTAMP_FILE)) === timestamp) return "unchanged";
  await inPartition(partition, (directory) => directory.remove(TIMESTAMP_FILE));
  const started = Date.now();
  log.info({ state: instance.requestedState }, "deploying instance");
  try {
    if (extrasProblem) throw extrasProblem;
    const outcome = await deploy(context, partition, { instance, extras: desired.extras ?? {} }, log);
    await writeMark(partition, TIMESTAMP_FILE, timestamp);
    log.info({ seconds: (Date.now() - started) / 1000, outcome }, "instance deployed");
    return outcome;
  } catch (error) {
    const message = (error as Error).message;
    log.error({ err: error }, "instance deployment failed");
    await inPartition(partition, (directory) =>
      directory.write(`.slapgrid-${partition.reference}-error.log`, message, {
        mode: 0o640,
        owner: ownerOf(partitionUser(context, partition)),
      }),
    ).catch((writeError) => log.warn({ err: writeError }, "could not write the partition's error log"));
    await reportState(context, instance, { state: "error", errorLog: message }, log).catch((reportError) => {
      log.warn({ err: reportError }, "could not report the error to the master");
    });
    return "failed";
  }
}
