import { userInfo } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import type { NodeConfig } from "../config.js";
import { type LocalPartition, partitionReference, readLocalPartitions } from "../partitions.js";
import { ensureAddressOwnership } from "./address-ownership.js";
import { planAddresses } from "./addresses.js";
import { ChangeLog } from "./changes.js";
import { ensureDirectory } from "./directories.js";
import { readHostNetwork } from "./host-network.js";
import { applyNetwork } from "./network.js";
import { partitionResource, readRecordedPartitions, serializeResource, writeResource } from "./resource.js";
import { refuseToShrink } from "./shrink.js";
import { ensureUsers, type Owner, PARTITION_SHELL } from "./users.js";

export interface FormatResult {
  /** The node's partitions after the run, as `readLocalPartitions` reads them. */
  partitions: LocalPartition[];
  /** What this run changed, one human-readable line each; empty when the node was already formatted. */
  changed: string[];
}

const ROOT_MODE = 0o755;
const PARTITION_MODE = 0o750;

/** Who owns the partitions, and how `.slapos-resource` names that user. */
interface Ownership {
  software?: Owner;
  partitions: Owner[];
  shell: string;
  additionalGroups: string[];
}

/**
 * `slap node format`: makes the node's partitions exist (users, directories, addresses, taps,
 * `.slapos-resource`), changing only what is missing or wrong, so that a re-run changes nothing.
 * Partitions may be added (a larger partition_amount) but never removed. The address scheme is
 * described in addresses.ts; with alter_network = false its addresses are recorded, not added.
 */
export async function formatNode(config: NodeConfig, logger: Logger): Promise<FormatResult> {
  const started = performance.now();
  const { format } = config;
  refuseWithoutRoot(config);
  // Whatever may refuse the run is checked before anything changes.
  const recorded = await readRecordedPartitions(config);
  refuseToShrink(config, recorded);
  const host = await readHostNetwork();
  const reference = (index: number) => partitionReference(config, index);
  const addresses = planAddresses({
    partitionAmount: format.partitionAmount,
    interfaceName: format.interfaceName,
    ipv4LocalNetwork: format.ipv4LocalNetwork,
    host,
    recorded: new Map([...recorded].map(([index, partition]) => [index, partition.addresses])),
    reference,
  });

  const changes = new ChangeLog(logger);
  const ownership = format.alterUser ? await usersOwnership(config, changes) : agentOwnership(config);
  await ensureDirectory({ path: config.softwareRoot, mode: ROOT_MODE, owner: ownership.software }, changes);
  await ensureDirectory({ path: config.instanceRoot, mode: ROOT_MODE }, changes);
  const partitions = addresses.map((partitionAddresses, index) => ({
    reference: reference(index),
    path: join(config.instanceRoot, reference(index)),
    owner: ownership.partitions[index] as Owner,
    addresses: partitionAddresses,
    tap: tapOf(config, index, host.links),
  }));
  for (const [index, partition] of partitions.entries()) {
    const { path, owner } = partition;
    await ensureDirectory({ path, mode: PARTITION_MODE, owner, partition: partition.reference }, changes);
    const resource = partitionResource({
      ...partition,
      user: { name: owner.name, shell: ownership.shell, additionalGroups: ownership.additionalGroups },
    });
    await writeResource(
      config,
      path,
      serializeResource(resource),
      recorded.get(index),
      changes,
      partition.reference,
    );
  }
  // Addresses come last: the resource files record them first, so that a run interrupted
  // half-way re-adds the same ones instead of numbering anew. Who may send from them is settled
  // before they exist, so that no partition address is ever up unguarded.
  if (format.alterNetwork) {
    await ensureAddressOwnership(
      partitions.map(({ reference, owner, addresses }) => ({
        reference,
        user: owner,
        addresses: [addresses.ipv4, addresses.ipv6],
      })),
      changes,
    );
    const networkPartitions = partitions.map(({ reference, addresses, tap, owner }) => ({
      reference,
      addresses,
      tap: tap === null ? null : { name: tap, owner },
    }));
    await applyNetwork(format.interfaceName, host, networkPartitions, changes, logger);
  } else {
    logger.warn(
      "alter_network = false: partition address ownership is not enforced, so any partition's processes may send from another partition's addresses; set alter_network = true, as root, to enforce it",
    );
  }
  const count = changes.made.length;
  logger.info(
    {
      partitions: format.partitionAmount,
      changes: count,
      durationMs: Math.round(performance.now() - started),
    },
    count > 0 ? `format: ${count} changes` : "format: nothing to change",
  );
  return { partitions: await readLocalPartitions(config), changed: changes.made };
}

/**
 * The partition's tap: format creates it with alter_network; without, a tap is recorded only if
 * it already exists (made by the operator), so that `.slapos-resource` never names a missing one.
 */
function tapOf(config: NodeConfig, index: number, links: ReadonlyMap<string, unknown>): string | null {
  const name = `${config.format.tapBaseName}${index}`;
  return config.format.createTap && (config.format.alterNetwork || links.has(name)) ? name : null;
}

function refuseWithoutRoot(config: NodeConfig): void {
  if (process.getuid?.() === 0) return;
  const needRoot = [
    config.format.alterUser ? "alter_user" : null,
    config.format.alterNetwork ? "alter_network" : null,
  ].filter((key) => key !== null);
  if (needRoot.length === 0) return;
  throw new Error(
    `format with ${needRoot.map((key) => `${key} = true`).join(" and ")} changes the system's users or network, so it must run as root: run it as root, or set ${needRoot.map((key) => `${key} = false`).join(" and ")} in [slapformat] of ${config.path}`,
  );
}

async function usersOwnership(config: NodeConfig, changes: ChangeLog): Promise<Ownership> {
  const { software, partitions } = await ensureUsers(config, changes);
  return { software, partitions, shell: PARTITION_SHELL, additionalGroups: [config.format.softwareUser] };
}

/** alter_user = false: every partition belongs to the agent's own user. */
function agentOwnership(config: NodeConfig): Ownership {
  const me = userInfo();
  const owner = { name: me.username, uid: me.uid, gid: me.gid };
  return {
    partitions: Array.from({ length: config.format.partitionAmount }, () => owner),
    shell: me.shell ?? PARTITION_SHELL,
    additionalGroups: [],
  };
}
