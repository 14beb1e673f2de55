import * as pulumi from "@pulumi/pulumi";
import type { SshConnectionArgs } from "./computer.js";
import { SlaposResource } from "./dynamic.js";
import type { MasterSettings } from "./master.js";
import type { MasterDatabase } from "./providers/self-hosted-master.js";

export type { MasterDatabase };

export interface SelfHostedMasterArgs {
  /** The first host, reached over SSH: it becomes a node, and the master runs as an instance on it. */
  ssh: pulumi.Input<SshConnectionArgs>;
  /** The master instance's title (default `slapos-master`). Changing it replaces the master. */
  title?: pulumi.Input<string>;
  /** Partitions to format on the host (default 4: the master, its database, and room for more). */
  partitionCount?: pulumi.Input<number>;
  /** The interface carrying the partitions' addresses (default eth0). */
  interfaceName?: pulumi.Input<string>;
  /** The partitions' local IPv4 network, CIDR (default 10.0.0.0/16); the master listens on its partition's. */
  ipv4LocalNetwork?: pulumi.Input<string>;
  /** A tap interface per partition (default true). */
  createTap?: pulumi.Input<boolean>;
  /**
   * Where the master keeps its state: `postgresql` (default), a PostgreSQL instance the master
   * instance requests as its child on the same host, or `embedded` (PGlite in its partition).
   */
  database?: pulumi.Input<MasterDatabase>;
  /** The master's port on its partition's addresses (default 8443). */
  port?: pulumi.Input<number>;
  /** The seed master's port on the host's address while it runs, before the handover (default 8443). */
  seedPort?: pulumi.Input<number>;
  /** Wheels of the node's Python environment (default $SLAPOS_WHEELHOUSE, which scripts/setup.sh sets). */
  wheelhouse?: pulumi.Input<string>;
}

/**
 * A SlapOS master that runs as a software instance on the first node it manages (SlapOS is
 * self-hosted). Creating it bootstraps the host with the agent and a seed master on the embedded
 * database, supplies the master release, requests the master instance (and through it its
 * database), hands the seed's whole state over to it, re-points the node at it and stops the
 * seed; a run stopped half-way is finished by the next. `master` is what other resources take as
 * theirs. Deleting it uninstalls the host: the master goes with it, so delete everything that
 * uses it first (Pulumi does, when they take its `master`).
 */
export class SelfHostedMaster extends SlaposResource {
  /** The master's URL, on its instance's IPv6 address. */
  declare readonly url: pulumi.Output<string>;
  /** The master's CA certificate (PEM). */
  declare readonly caCertificate: pulumi.Output<string>;
  /** URL, CA and the admin's identity (secret): other resources' `master` input. */
  declare readonly master: pulumi.Output<Required<MasterSettings>>;
  /** The first host's computer id. */
  declare readonly computerId: pulumi.Output<string>;
  /** The master instance, as the master itself lists it. */
  declare readonly instanceId: pulumi.Output<string>;
  /** Its database instance (a child in its tree), null with the embedded database. */
  declare readonly databaseInstanceId: pulumi.Output<string | null>;
  declare readonly hostKey: pulumi.Output<string>;

  constructor(name: string, args: SelfHostedMasterArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      "self-hosted-master",
      "SelfHostedMaster",
      name,
      {
        ...args,
        ssh: pulumi.secret(args.ssh),
        url: undefined,
        caCertificate: undefined,
        master: undefined,
        computerId: undefined,
        instanceId: undefined,
        databaseInstanceId: undefined,
        hostKey: undefined,
      },
      opts,
      ["ssh"],
    );
  }
}
