import type * as pulumi from "@pulumi/pulumi";
import { SlaposResource } from "./dynamic.js";
import type { MasterSettings } from "./master.js";

export interface SoftwareReleaseArgs {
  /** The release's URL: a buildout profile (http(s), or a path the node can read). Changing it replaces the resource. */
  url: pulumi.Input<string>;
  /** The computer to install it on (a Computer's `computerId`). Changing it replaces the resource. */
  computerId: pulumi.Input<string>;
  /** The master, when not from the stack config or the environment (see MasterSettings). */
  master?: pulumi.Input<MasterSettings>;
}

/**
 * A software release supplied to a computer. Creating it waits until the node reports it
 * installed (30 minutes unless customTimeouts say otherwise); a failed build fails with the end
 * of its build log. Deleting it removes the release from the computer, refused while instances
 * there use it.
 */
export class SoftwareRelease extends SlaposResource {
  declare readonly url: pulumi.Output<string>;
  declare readonly computerId: pulumi.Output<string>;
  /** building, available or error, as the node last reported it. */
  declare readonly state: pulumi.Output<string>;

  constructor(name: string, args: SoftwareReleaseArgs, opts?: pulumi.CustomResourceOptions) {
    super("software-release", "SoftwareRelease", name, { ...args, state: undefined }, opts);
  }
}
