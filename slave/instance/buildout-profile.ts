import type { NodeConfig } from "../config.js";
import type { LocalPartition } from "../partitions.js";
import type { DesiredPartition, PartitionInstance } from "./types.js";

/** Where a partition's certificate and key are written, for slapos.cookbook recipes. */
export interface PartitionCredentialsFiles {
  certFile: string;
  keyFile: string;
}

/** The JSON file a profile may write to publish connection parameters without any recipe. */
export const PUBLISH_FILE = ".slap-publish.json";
/** Everything the node knows about the instance, as JSON, for profiles and services. */
export const INSTANCE_FILE = ".slap-instance.json";

const OPTION_NAME = /^[A-Za-z0-9_.-]+$/;
/**
 * Every sequence a reader may take for the end of a line: Python reads files with universal
 * newlines (`\r` alone ends a line) and `str.splitlines` also breaks on these separators.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these control characters are line breaks
const LINE_BREAK = /\r\n|[\n\v\f\r\x1c-\x1e\x85\u2028\u2029]/;

/**
 * A buildout option value: each of its lines after the first indented as a continuation line, so
 * that no value (a requester's parameter, a title) can start a section or an option of its own;
 * `${` would be expanded, so such values are left out.
 */
export function optionLine(name: string, value: string): string | null {
  if (!OPTION_NAME.test(name) || value.includes("${")) return null;
  const [first, ...rest] = value.split(LINE_BREAK);
  return [`${name} = ${first}`, ...rest.map((line) => `  ${line}`)].join("\n");
}

function section(name: string, options: [string, string][]): string {
  const lines = options.map(([key, value]) => optionLine(key, value)).filter((line) => line !== null);
  return [`[${name}]`, ...lines].join("\n");
}

/**
 * The data of `[slap-instance]` and `.slap-instance.json`. `extras` are the partition's, as the
 * master set them (the agent applied them before this deployment).
 */
export function instanceData(
  partition: LocalPartition,
  instance: PartitionInstance,
  extras: DesiredPartition["extras"],
) {
  const ipv4 = partition.addresses.map((a) => a.address).filter((address) => !address.includes(":"));
  const ipv6 = partition.addresses.map((a) => a.address).filter((address) => address.includes(":"));
  return {
    id: instance.id,
    title: instance.title,
    rootTitle: instance.rootTitle,
    softwareReleaseUrl: instance.softwareReleaseUrl,
    softwareType: instance.softwareType,
    state: instance.requestedState,
    partitionId: partition.reference,
    partitionPath: partition.path,
    user: partition.user.name,
    ipv4,
    ipv6,
    tap: partition.tap,
    routableIpv4: extras.routableIpv4 ?? null,
    blockDevice: extras.blockDevice ?? null,
    parameters: instance.parameters,
    sharedInstances: instance.sharedInstances,
  };
}

/**
 * The tail slapgrid appends to the release's instance.cfg (reference section 7.3), so that
 * slapos.cookbook recipes reach the master with the partition's certificate, plus `[slap-instance]`:
 * the parameters, addresses and partition data given directly, for profiles that use no recipe.
 */
export function buildoutTail(
  config: NodeConfig,
  partition: LocalPartition,
  instance: PartitionInstance,
  credentials: PartitionCredentialsFiles,
  extras: DesiredPartition["extras"],
): string {
  const data = instanceData(partition, instance, extras);
  const slapConnection: [string, string][] = [
    ["computer-id", config.computerId],
    ["partition-id", partition.reference],
    ["server-url", config.masterUrl],
    ["software-release-url", instance.softwareReleaseUrl],
    ["key-file", credentials.keyFile],
    ["cert-file", credentials.certFile],
    ["shared-part-list", ""],
    ["build-time-part-list", ""],
    ["requested-state", instance.requestedState],
  ];
  return [
    "",
    "# This is the beginning of the tail added by the slap agent",
    "[buildout]",
    "# put buildout generated binaries in a directory of their own",
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a buildout reference, not a JS template
    "bin-directory = ${buildout:directory}/sbin",
    "# protect the software and run parts offline",
    "offline = true",
    "",
    section("slap-connection", slapConnection),
    "",
    "# Kept for backward compatibility with older recipes",
    section(
      "slap_connection",
      slapConnection.slice(0, 6).map(([key, value]) => [key.replaceAll("-", "_"), value] as [string, string]),
    ),
    "",
    section("slap-instance", [
      ["id", data.id],
      ["title", data.title],
      ["root-title", data.rootTitle],
      ["software-type", data.softwareType],
      ["state", data.state],
      ["partition-id", data.partitionId],
      ["partition-path", data.partitionPath],
      ["user", data.user],
      ["ipv4", data.ipv4[0] ?? ""],
      ["ipv6", data.ipv6[0] ?? ""],
      ["ipv4-list", data.ipv4.join(" ")],
      ["ipv6-list", data.ipv6.join(" ")],
      ["tap", data.tap ?? ""],
      ["routable-ipv4", data.routableIpv4 ?? ""],
      ["block-device", data.blockDevice ?? ""],
      ["instance-file", `${partition.path}/${INSTANCE_FILE}`],
      ["publish-file", `${partition.path}/${PUBLISH_FILE}`],
      ["restore-from", config.restoreFrom],
      ...Object.entries(instance.parameters).map(
        ([key, value]) => [`configuration.${key}`, value] as [string, string],
      ),
    ]),
    "# This is the end of the tail added by the slap agent",
    "",
  ].join("\n");
}
