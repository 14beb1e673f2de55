import type * as pulumi from "@pulumi/pulumi";
import { SlaposResource } from "./dynamic.js";
import type { MasterSettings } from "./master.js";

export interface PartitionArgs {
  /** The computer (a Computer's `computerId`). Changing it replaces the resource. */
  computerId: pulumi.Input<string>;
  /** Which of its partitions, e.g. "slappart3" (see the Computer's `partitions`). Changing it replaces the resource. */
  reference: pulumi.Input<string>;
  /** A routable IPv4 address the node adds to its interface (as /32) for this partition alone. */
  routableIpv4?: pulumi.Input<string>;
  /** A block device under /dev/ the node gives to this partition's user. */
  blockDevice?: pulumi.Input<string>;
  /** The master, when not from the stack config or the environment (see MasterSettings). */
  master?: pulumi.Input<MasterSettings>;
}

/**
 * One partition of a Computer configured on its own: a routable IPv4 address, a block device.
 * The instance deployed there sees them as `routable-ipv4` and `block-device` in its
 * `[slap-instance]` section. Deleting the resource gives the partition back its defaults.
 */
export class Partition extends SlaposResource {
  /** The partition's unix user. */
  declare readonly user: pulumi.Output<string>;
  /** The partition's directory on the node. */
  declare readonly path: pulumi.Output<string>;
  /** Its local IPv4 and IPv6 addresses (format's). */
  declare readonly ipv4: pulumi.Output<string[]>;
  declare readonly ipv6: pulumi.Output<string[]>;
  /** Its tap interface, if the computer makes taps. */
  declare readonly tap: pulumi.Output<string | null>;
  declare readonly routableIpv4: pulumi.Output<string | undefined>;
  declare readonly blockDevice: pulumi.Output<string | undefined>;

  constructor(name: string, args: PartitionArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "partition",
      "Partition",
      name,
      { ...args, user: undefined, path: undefined, ipv4: undefined, ipv6: undefined, tap: undefined },
      opts,
    );
  }
}
