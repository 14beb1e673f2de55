import { execa } from "execa";
import type { PartitionProcesses } from "./index.js";

/**
 * Checks that supervisord, given `user=<uid>`, will run the partition's processes with the
 * partition's uid and gid. supervisord (4.3.0, options.drop_privileges) takes the gid from the
 * uid's passwd entry, not from the configuration, and the supplementary groups from every group
 * listing that entry's *name* as a member; so the passwd entry must name the partition's user and
 * have the partition's group as its primary group. getent goes through NSS, as Python's pwd does.
 */
export async function assertRunsAsPartitionUser(partition: PartitionProcesses): Promise<void> {
  const { reference, uid, gid, userName } = partition;
  if (uid === 0 || gid === 0) {
    throw new Error(`${reference}: refusing to run its processes as uid ${uid} / gid ${gid}: never as root`);
  }
  const result = await execa("getent", ["passwd", String(uid)], { reject: false });
  if (result.exitCode !== 0) {
    throw new Error(
      `${reference}: uid ${uid} has no passwd entry, so supervisord cannot run processes as it: run 'slap node format'`,
    );
  }
  const [name, , , primaryGid] = result.stdout.trim().split(":");
  if (name !== userName || Number(primaryGid) !== gid) {
    throw new Error(
      `${reference}: supervisord would run its processes as ${name} (uid ${uid}) with gid ${primaryGid}, ` +
        `the passwd entry's primary group, but the partition belongs to ${userName} with gid ${gid}: ` +
        `make ${gid} the primary group of ${userName} (usermod -g) or chown the partition, then redeploy`,
    );
  }
}
