import type { NodeConfig } from "../config.js";
import type { RecordedPartition } from "./resource.js";

/**
 * Format never removes a partition: one may still hold an instance's data. Fewer partitions than
 * are formatted is refused before anything changes.
 */
export function refuseToShrink(config: NodeConfig, recorded: ReadonlyMap<number, RecordedPartition>): void {
  const { partitionAmount } = config.format;
  const beyond = [...recorded.values()].filter((partition) => partition.index >= partitionAmount);
  if (beyond.length === 0) return;
  const highest = Math.max(...beyond.map((partition) => partition.index));
  const references = beyond
    .sort((a, b) => a.index - b.index)
    .map((partition) => partition.reference)
    .join(", ");
  throw new Error(
    `${config.instanceRoot} holds formatted partitions beyond [slapformat] partition_amount = ${partitionAmount} (${references}), and format never removes partitions: set partition_amount = ${highest + 1} or more in ${config.path}, or, once no instance uses them, remove those directories by hand and run format again`,
  );
}
