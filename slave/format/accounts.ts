import { readFile } from "node:fs/promises";

/** The local account databases, read directly: on a re-run this costs no process at all. */
export interface Accounts {
  users: Map<string, AccountUser>;
  groups: Map<string, AccountGroup>;
  /** The password field of /etc/shadow by user name; `!...` is locked. */
  passwords: Map<string, string>;
}

export interface AccountUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface AccountGroup {
  name: string;
  gid: number;
  members: string[];
}

async function records(path: string): Promise<string[][]> {
  const text = await readFile(path, "utf8");
  return text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => line.split(":"));
}

export async function readAccounts(): Promise<Accounts> {
  const [passwd, group, shadow] = await Promise.all([
    records("/etc/passwd"),
    records("/etc/group"),
    records("/etc/shadow"),
  ]);
  const users = new Map<string, AccountUser>();
  for (const [name = "", , uid = "", gid = "", , home = "", shell = ""] of passwd) {
    users.set(name, { name, uid: Number(uid), gid: Number(gid), home, shell });
  }
  const groups = new Map<string, AccountGroup>();
  for (const [name = "", , gid = "", members = ""] of group) {
    groups.set(name, { name, gid: Number(gid), members: members.split(",").filter(Boolean) });
  }
  const passwords = new Map(shadow.map(([name = "", password = ""]) => [name, password]));
  return { users, groups, passwords };
}

export function isLocked(accounts: Accounts, user: string): boolean {
  return accounts.passwords.get(user)?.startsWith("!") ?? false;
}
