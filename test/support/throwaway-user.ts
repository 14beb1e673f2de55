import { execa } from "execa";

export interface ThrowawayUser {
  name: string;
  uid: number;
  gid: number;
}

/** A system user with a group of its own, no home and the given shell: a partition's user in a test. */
export async function createThrowawayUser(name: string, shell = "/usr/sbin/nologin"): Promise<ThrowawayUser> {
  await execa("useradd", ["--system", "--no-create-home", "--user-group", "--shell", shell, name]);
  const [uid, gid] = await Promise.all(
    ["-u", "-g"].map(async (flag) => (await execa("id", [flag, name])).stdout),
  );
  return { name, uid: Number(uid), gid: Number(gid) };
}

/**
 * Removes it, with --force: test hosts share this kernel's uids, and userdel refuses a uid that
 * another host's process still uses. No error when it is already gone.
 */
export async function removeThrowawayUser(name: string): Promise<void> {
  await execa("userdel", ["--force", name], { reject: false });
}
