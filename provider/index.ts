export {
  type AllocationScope,
  Computer,
  type ComputerArgs,
  type ComputerCapabilities,
  type PartitionInfo,
  type SshConnectionArgs,
} from "./computer.js";
export type { MasterSettings } from "./master.js";
export { Partition, type PartitionArgs } from "./partition.js";
export { SelfHostedMaster, type SelfHostedMasterArgs } from "./self-hosted-master.js";
export { SoftwareInstance, type SoftwareInstanceArgs } from "./software-instance.js";
export { SoftwareRelease, type SoftwareReleaseArgs } from "./software-release.js";
