import type { DesiredState } from "../../protocol/client.js";

export type DesiredPartition = DesiredState["partitions"][number];
/** The instance the master placed in a partition. */
export type PartitionInstance = NonNullable<DesiredPartition["instance"]>;
