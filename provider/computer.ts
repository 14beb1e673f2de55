import * as pulumi from "@pulumi/pulumi";
import { SlaposResource } from "./dynamic.js";
import type { MasterSettings } from "./master.js";
import type { AllocationScope, ComputerCapabilities, PartitionInfo } from "./providers/computer.js";

export type { AllocationScope, ComputerCapabilities, PartitionInfo };

/** How the controller (the machine running Pulumi) reaches the host. */
export interface SshConnectionArgs {
  /** The host's address or name. */
  host: pulumi.Input<string>;
  /** Default 22. */
  port?: pulumi.Input<number>;
  /** root, or a user with password-less sudo. Default root. */
  user?: pulumi.Input<string>;
  /**
   * Whether a user other than root runs the bootstrap's commands through `sudo -n` (default
   * true). The node needs root: `false` with another user is refused by the preview.
   */
  sudo?: pulumi.Input<boolean>;
  /** An OpenSSH or PEM private key; without it, the SSH agent at $SSH_AUTH_SOCK. Kept secret in the state. */
  privateKey?: pulumi.Input<string>;
  /**
   * The host's key, `SHA256:...` as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it.
   * Required: a host presenting another key is refused before anything is sent.
   */
  hostKey: pulumi.Input<string>;
}

export interface ComputerArgs {
  ssh: pulumi.Input<SshConnectionArgs>;
  /** The computer's name on the master (default: the one registration gives). */
  title?: pulumi.Input<string>;
  /** Partitions to format. More is an in-place change; fewer replaces the computer (format never removes partitions in use). */
  partitionCount: pulumi.Input<number>;
  /** The interface carrying the partitions' addresses (default eth0). Changing it replaces the computer. */
  interfaceName?: pulumi.Input<string>;
  /** The partitions' local IPv4 network, CIDR (default 10.0.0.0/16). Changing it replaces the computer. */
  ipv4LocalNetwork?: pulumi.Input<string>;
  /** A tap interface per partition (default true). Changing it replaces the computer. */
  createTap?: pulumi.Input<boolean>;
  /** The region the marketplace matches `sla.region` against. */
  region?: pulumi.Input<string>;
  /** Hardware the marketplace matches SLA conditions against. */
  capabilities?: pulumi.Input<ComputerCapabilities>;
  /** Price of one partition-hour, billed to the instances' owners. */
  pricePerHour?: pulumi.Input<number>;
  /**
   * Who may place instances here, and so have their software releases installed here:
   * `personal` (default: only your own requests), `organisation` (also the members of your
   * organisations), `open` (anyone: the public marketplace). Narrowing it never stops what
   * already runs here; it only refuses new placements.
   */
  allocationScope?: pulumi.Input<AllocationScope>;
  /**
   * An existing computer this host becomes: to rebuild a lost node on a new host (its partitions
   * and instances come back from the master), or to adopt a node bootstrapped outside Pulumi.
   */
  computerId?: pulumi.Input<string>;
  /** With `computerId`, a URL under which the instances find backups of their data (each gets it as `restore-from`). */
  restoreFrom?: pulumi.Input<string>;
  /** Wheels of the node's Python environment (default $SLAPOS_WHEELHOUSE, which scripts/setup.sh sets). */
  wheelhouse?: pulumi.Input<string>;
  /** The master, when not from the stack config or the environment (see MasterSettings). */
  master?: pulumi.Input<MasterSettings>;
}

/**
 * A host bootstrapped over SSH into a registered, formatted node running the agent. Creating it
 * installs everything (progress shown as it goes); updating converges the host (more partitions,
 * a newer agent) and the marketplace settings in place; deleting uninstalls the node and retires
 * the computer (a host that is gone only gets a warning).
 */
export class Computer extends SlaposResource {
  /** The computer's id on the master. */
  declare readonly computerId: pulumi.Output<string>;
  /** The host key the host presented. */
  declare readonly hostKey: pulumi.Output<string>;
  /** The partitions format made: reference, unix user, path, addresses, tap. */
  declare readonly partitions: pulumi.Output<PartitionInfo[]>;
  /** The agent version installed (a digest of its bundle). */
  declare readonly agentVersion: pulumi.Output<string>;
  declare readonly title: pulumi.Output<string | undefined>;
  declare readonly region: pulumi.Output<string | undefined>;
  declare readonly pricePerHour: pulumi.Output<number | undefined>;
  declare readonly allocationScope: pulumi.Output<AllocationScope | undefined>;

  constructor(name: string, args: ComputerArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "computer",
      "Computer",
      name,
      {
        ...args,
        ssh: pulumi.secret(args.ssh),
        computerId: args.computerId,
        hostKey: undefined,
        partitions: undefined,
        agentVersion: undefined,
      },
      opts,
      ["ssh"],
    );
  }
}
