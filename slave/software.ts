import { createHash } from "node:crypto";
import { access } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Logger } from "pino";
import type { DesiredState } from "../protocol/client.js";
import type { NodeConfig } from "./config.js";
import { ConfinedDirectory } from "./isolation/confined-directory.js";
import { groupPidFile, killLeftover, type RunUser, runAs, SYSTEM_PATH, tail } from "./run-as.js";

export type SoftwareEntry = DesiredState["software"][number];

/** What the software step reports to the master. */
export type SoftwareReport =
  | { url: string; state: "building" | "available" | "destroyed" }
  | { url: string; state: "error"; errorLog: string };

const COMPLETED_FILE = ".completed";
const BUILD_LOG_FILE = ".slap-build.log";

function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** `<software_root>/<md5 hex of the URL>`, as slapgrid names it. */
export function softwarePath(config: NodeConfig, url: string): string {
  return join(config.softwareRoot, createHash("md5").update(url).digest("hex"));
}

export function isInstalled(config: NodeConfig, url: string): Promise<boolean> {
  return exists(join(softwarePath(config, url), COMPLETED_FILE));
}

/** The buildout the node runs, from its own Python environment. */
export function buildoutCommand(config: NodeConfig): string {
  return join(config.pythonEnvironment, "bin", "buildout");
}

/**
 * Installs a release with real zc.buildout as the software user, or removes it. Never rebuilds
 * what has `.completed`; writes `.completed` only once buildout succeeded, so an interrupted build
 * starts over on the next pass.
 */
export async function processSoftware(
  config: NodeConfig,
  softwareUser: RunUser,
  entry: SoftwareEntry,
  report: (report: SoftwareReport) => Promise<void>,
  logger: Logger,
): Promise<"unchanged" | "installed" | "failed" | "removed"> {
  const path = softwarePath(config, entry.url);
  const name = basename(path);
  const log = logger.child({ software: entry.url, path });
  // software_root belongs to the software user, whom every release's build code runs as: root
  // goes through it by descriptor only (isolation/confined-directory.ts).
  const inSoftwareRoot = <T>(work: (root: ConfinedDirectory) => Promise<T>) =>
    ConfinedDirectory.with(config.softwareRoot, work);
  if (entry.requestedState === "destroyed") {
    const present = await exists(path);
    if (present) {
      log.info("removing software release");
      await inSoftwareRoot((root) => root.remove(name));
    }
    await report({ url: entry.url, state: "destroyed" });
    return present ? "removed" : "unchanged";
  }
  if (await isInstalled(config, entry.url)) return "unchanged";

  log.info("building software release");
  await report({ url: entry.url, state: "building" });
  const pidFile = groupPidFile(config.instanceRoot, `build-${name}`);
  if (await exists(pidFile)) {
    // A build cut off half-way (the agent was killed) leaves buildout's state half-written:
    // start over from an empty directory rather than from whatever it left.
    log.warn("the previous build of this release was interrupted: starting over");
    await killLeftover(pidFile);
    await inSoftwareRoot((root) => root.remove(name));
  }
  const owner = softwareUser ?? undefined;
  const buildoutCfg = join(path, "buildout.cfg");
  await inSoftwareRoot(async (root) => {
    const release = await root.ensureSubdirectory(name, { mode: 0o755, owner });
    try {
      await release.write("buildout.cfg", `[buildout]\nextends = ${entry.url}\n`, { mode: 0o644, owner });
    } finally {
      await release.close();
    }
  });

  const started = Date.now();
  const build = await runAs(
    softwareUser,
    "sh",
    // umask 022: partition users read the release through the directory's other bits too.
    [
      "-c",
      'umask 022 && exec "$@"',
      "sh",
      buildoutCommand(config),
      "-U",
      "-c",
      buildoutCfg,
      `buildout:directory=${path}`,
    ],
    {
      cwd: path,
      env: { PATH: SYSTEM_PATH, HOME: config.softwareRoot, LANG: "C.UTF-8", PYTHONNOUSERSITE: "true" },
      timeoutMs: config.softwareTimeoutSeconds * 1000,
      pidFile,
    },
  );
  const output = build.output;
  // The build ran as the software user, who may have left links where root writes next.
  await ConfinedDirectory.with(path, (release) => release.write(BUILD_LOG_FILE, output, { mode: 0o644 }));
  if (build.exitCode !== 0) {
    const reason =
      build.exitCode === undefined ? `was killed (${build.signal ?? "timeout"})` : `exited ${build.exitCode}`;
    const errorLog = `buildout ${reason} after ${((Date.now() - started) / 1000).toFixed(1)} s:\n${tail(output)}`;
    log.error({ exitCode: build.exitCode, signal: build.signal }, "software release build failed");
    await report({ url: entry.url, state: "error", errorLog });
    return "failed";
  }
  await access(join(path, "instance.cfg")).catch(() => {
    log.warn("the release built no instance.cfg: its instances cannot be deployed");
  });
  await ConfinedDirectory.with(path, (release) =>
    release.write(COMPLETED_FILE, `${new Date().toISOString()}\n`, { mode: 0o644 }),
  );
  log.info({ seconds: (Date.now() - started) / 1000 }, "software release installed");
  await report({ url: entry.url, state: "available" });
  return "installed";
}
