import type * as pulumi from "@pulumi/pulumi";
import { SlaposResource } from "./dynamic.js";
import type { MasterSettings } from "./master.js";

export interface SoftwareInstanceArgs {
  /** The instance's name on the master, unique per person. Changing it replaces the instance. */
  title: pulumi.Input<string>;
  /** The software release URL (the buildout profile). Changing it upgrades the instance in place, as in SlapOS. */
  softwareRelease: pulumi.Input<string>;
  /** Which instance profile of the release to deploy (default "default"). Changing it is a re-request, in place. */
  softwareType?: pulumi.Input<string>;
  /** Instance parameters; numbers and booleans become strings. Changes are applied in place. */
  parameters?: pulumi.Input<Record<string, pulumi.Input<string | number | boolean>>>;
  /**
   * Where it may run: `computer_guid`, `region`, `cpu_architecture`, `cpu_cores`, `memory_mb`,
   * `disk_gb`, `max_price` (unknown keys are refused). Changing it replaces the instance.
   */
  sla?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** A shared instance (a "slave" in SlapOS) served by a host instance's partition. Changing it replaces the instance. */
  shared?: pulumi.Input<boolean>;
  /**
   * Whose shared instances this instance agrees to serve: "personal" (default: its owner's only),
   * "organisation" (members of the owner's organisations) or "open" (anyone), e.g. a front-end
   * serving others. Its computer's allocation scope must admit them too. Changed in place.
   */
  sharingScope?: pulumi.Input<"personal" | "organisation" | "open">;
  /** "started" (default) or "stopped". Deleting the resource destroys the instance. */
  state?: pulumi.Input<"started" | "stopped">;
  /** Connection parameters to wait for before the resource is ready (e.g. ["url"]). */
  waitFor?: pulumi.Input<pulumi.Input<string>[]>;
  /** The master, when not from the stack config or the environment (see MasterSettings). */
  master?: pulumi.Input<MasterSettings>;
}

/**
 * A software instance requested from the master. Creating or updating it waits until the node
 * reports the requested state and publishes the `waitFor` connection parameters (10 minutes
 * unless customTimeouts say otherwise); a failed deployment fails with the node's log. Deleting
 * it destroys the instance and waits until its partition is freed.
 */
export class SoftwareInstance extends SlaposResource {
  /** The instance's id on the master. */
  declare readonly instanceId: pulumi.Output<string>;
  /** The computer and partition it runs in (null while no partition meets its SLA). */
  declare readonly computerId: pulumi.Output<string | null>;
  declare readonly partitionReference: pulumi.Output<string | null>;
  /** The partition's addresses. */
  declare readonly ipList: pulumi.Output<string[]>;
  /** What the instance published (URLs, passwords...). Secret. */
  declare readonly connectionParameters: pulumi.Output<Record<string, string>>;
  /** pending, deploying, ready, error, destroying or destroyed, as the master sees it. */
  declare readonly status: pulumi.Output<string>;
  declare readonly state: pulumi.Output<"started" | "stopped">;

  constructor(name: string, args: SoftwareInstanceArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "software-instance",
      "SoftwareInstance",
      name,
      {
        ...args,
        instanceId: undefined,
        computerId: undefined,
        partitionReference: undefined,
        ipList: undefined,
        connectionParameters: undefined,
        status: undefined,
      },
      opts,
      ["connectionParameters"],
    );
  }
}
