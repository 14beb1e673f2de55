import type * as pulumi from "@pulumi/pulumi";
import { PartitionReference, PartitionSettings } from "../../protocol/api.js";
import type { MasterClient } from "../../protocol/client.js";
import type { Timeouts } from "../dynamic.js";
import type { MasterSettings } from "../master.js";
import { anyChanged, IMPORT_UNSUPPORTED, replacedKeys, schemaFailures } from "./check.js";
import { fetchComputer, type PartitionInfo, partitionsOf } from "./computer.js";
import { type StackSettings, withMaster } from "./connection.js";

export interface PartitionInputs {
  computerId: string;
  reference: string;
  routableIpv4?: string;
  blockDevice?: string;
  master?: MasterSettings;
  __timeouts?: Timeouts;
}

export interface PartitionOutputs extends PartitionInputs, Omit<PartitionInfo, "reference"> {}

/** Sets the partition's extras on the master (the node applies them) and returns what it records. */
async function configure(client: MasterClient, inputs: PartitionInputs): Promise<PartitionOutputs> {
  await client.configurePartition(inputs.computerId, inputs.reference, {
    routableIpv4: inputs.routableIpv4 ?? null,
    blockDevice: inputs.blockDevice ?? null,
  });
  const partition = partitionsOf(await client.getComputer(inputs.computerId)).find(
    (candidate) => candidate.reference === inputs.reference,
  );
  if (!partition) throw new Error(`computer ${inputs.computerId} has no partition ${inputs.reference}`);
  const { reference: _, ...info } = partition;
  return { ...inputs, ...info };
}

export class PartitionProvider implements pulumi.dynamic.ResourceProvider<PartitionInputs, PartitionOutputs> {
  constructor(private readonly stack: StackSettings) {}

  async check(_olds: PartitionInputs, news: PartitionInputs) {
    const failures = [
      ...schemaFailures(PartitionReference, news.reference).map((failure) => ({
        ...failure,
        property: "reference",
        reason: `${failure.reason} (e.g. slappart3, see the Computer's partitions)`,
      })),
      ...schemaFailures(PartitionSettings, {
        routableIpv4: news.routableIpv4,
        blockDevice: news.blockDevice,
      }),
    ];
    return { inputs: news, failures };
  }

  async diff(_id: string, olds: PartitionOutputs, news: PartitionInputs) {
    const { replaces, unknown } = replacedKeys([
      ["computerId", olds.computerId, news.computerId],
      ["reference", olds.reference, news.reference],
    ]);
    const changes =
      replaces.length > 0 ||
      unknown ||
      anyChanged([
        [olds.routableIpv4, news.routableIpv4],
        [olds.blockDevice, news.blockDevice],
        [olds.master, news.master],
      ]);
    return { changes, replaces };
  }

  async create(inputs: PartitionInputs) {
    const outs = await withMaster(inputs.master, this.stack, (client) => configure(client, inputs));
    return { id: `${inputs.computerId}/${inputs.reference}`, outs };
  }

  async update(_id: string, _olds: PartitionOutputs, news: PartitionInputs) {
    return { outs: await withMaster(news.master, this.stack, (client) => configure(client, news)) };
  }

  /** The extras as the master records them now; a partition (or computer) that is gone leaves the stack. */
  async read(id: string, props?: PartitionOutputs) {
    if (!props) throw new Error(IMPORT_UNSUPPORTED);
    const computer = await withMaster(props.master, this.stack, (client) =>
      fetchComputer(client, props.computerId),
    );
    const extras = computer?.partitions.find((candidate) => candidate.reference === props.reference)?.extras;
    const info =
      computer && partitionsOf(computer).find((candidate) => candidate.reference === props.reference);
    if (!extras || !info) return {};
    const inputs: PartitionInputs = {
      computerId: props.computerId,
      reference: props.reference,
      routableIpv4: extras.routableIpv4 ?? undefined,
      blockDevice: extras.blockDevice ?? undefined,
      master: props.master,
      __timeouts: props.__timeouts,
    };
    const { reference: _, ...rest } = info;
    // The SDK types `inputs` as outputs; the engine stores them as the resource's inputs.
    return { id, props: { ...inputs, ...rest }, inputs: inputs as PartitionOutputs };
  }

  /** Gives the partition back to the computer's defaults: no routable address, no block device. */
  async delete(_id: string, props: PartitionOutputs) {
    await withMaster(props.master, this.stack, async (client) => {
      const computer = await fetchComputer(client, props.computerId);
      if (!computer?.partitions.some((partition) => partition.reference === props.reference)) return;
      await client.configurePartition(props.computerId, props.reference, {
        routableIpv4: null,
        blockDevice: null,
      });
    });
  }
}
