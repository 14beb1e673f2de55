import * as pulumi from "@pulumi/pulumi";
import { Computer, type MasterSettings, SoftwareInstance, SoftwareRelease } from "pulumi-slapos";

/** A server to turn into a node, reached over SSH. */
export interface WebCloudHost {
  /** A name for the Pulumi resources and the computer's title on the master. */
  name: string;
  /** The address the controller reaches the host's sshd at. */
  address: string;
  /** root (default), or a user with password-less sudo. */
  user?: string;
  /** The host's key, `SHA256:...` (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`). */
  hostKey: string;
  /** A private key accepted for root on the host; without it, the SSH agent. */
  privateKey?: pulumi.Input<string>;
}

export interface WebCloudArgs {
  hosts: WebCloudHost[];
  /** The software release every host installs and runs one instance of (a buildout profile). */
  release: string;
  /** The `greeting` parameter of the instances. */
  greeting?: string;
  /** Partitions to format on each host (default 4). */
  partitionCount?: number;
  /** The partitions' local IPv4 network on each host, CIDR (default 10.0.0.0/16). */
  ipv4LocalNetwork?: string;
  /** The master, when not from the stack config (`slapos:*`) or the environment. */
  master?: pulumi.Input<MasterSettings>;
}

export interface WebCloud {
  computers: Computer[];
  instances: SoftwareInstance[];
  /** Each instance's URL, in the order of the hosts. */
  urls: pulumi.Output<string>[];
}

/**
 * One node per host, the release installed on each, and one instance per node pinned to it by
 * its SLA, ready once it has published its URL. Used by `npm run demo`; a program of one's own
 * calls it the same way:
 *
 * ```ts
 * const cloud = webCloud({
 *   hosts: [{ name: "web-a", address: "203.0.113.7", hostKey: "SHA256:...", privateKey: key }],
 *   release: "https://example.org/hello-web/software.cfg",
 * });
 * export const urls = cloud.urls;
 * ```
 */
export function webCloud(args: WebCloudArgs): WebCloud {
  const computers: Computer[] = [];
  const instances: SoftwareInstance[] = [];
  for (const host of args.hosts) {
    const computer = new Computer(host.name, {
      ssh: { host: host.address, user: host.user, hostKey: host.hostKey, privateKey: host.privateKey },
      title: host.name,
      partitionCount: args.partitionCount ?? 4,
      ipv4LocalNetwork: args.ipv4LocalNetwork,
      master: args.master,
    });
    const release = new SoftwareRelease(`${host.name}-release`, {
      url: args.release,
      computerId: computer.computerId,
      master: args.master,
    });
    const instance = new SoftwareInstance(
      `${host.name}-web`,
      {
        title: `${host.name}-web`,
        softwareRelease: release.url,
        parameters: { greeting: args.greeting ?? "Hello" },
        sla: { computer_guid: release.computerId },
        waitFor: ["url"],
        master: args.master,
      },
      { dependsOn: release },
    );
    computers.push(computer);
    instances.push(instance);
  }
  return {
    computers,
    instances,
    // A URL is no secret: unwrapped from the secret connection parameters on purpose.
    urls: instances.map((instance) =>
      pulumi.unsecret(instance.connectionParameters.apply((parameters) => parameters.url ?? "")),
    ),
  };
}
