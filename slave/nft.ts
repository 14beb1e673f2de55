import { execa } from "execa";

/** One of the agent's own nftables tables, all of family inet. */
export interface NftTable {
  name: string;
  /** What the table does, for the message when nft cannot run: "network accounting", ... */
  purpose: string;
  /** The network namespace to act in, by `ip netns exec` (tests use a throwaway one); the agent's own when absent. */
  netns?: string;
}

async function nft(table: NftTable, args: string[], input?: string) {
  const [file, ...prefix] = table.netns === undefined ? ["nft"] : ["ip", "netns", "exec", table.netns, "nft"];
  // Untranslated messages: isMissingTable reads them.
  const result = await execa(file, [...prefix, ...args], { input, reject: false, env: { LC_ALL: "C" } });
  if (result.failed && result.exitCode === undefined) {
    throw new Error(
      `cannot run nft (${result.shortMessage}): install nftables, or set alter_network = false to run without ${table.purpose}`,
    );
  }
  return result;
}

function nftError(args: string[], result: { exitCode?: number; stderr: string }, input?: string): Error {
  const batch = input === undefined ? "" : `\nbatch:\n${input}`;
  return new Error(
    `nft ${args.join(" ")} failed (${result.exitCode}): ${result.stderr.trim()}${batch}\nThe agent must run as root with nftables in the kernel.`,
  );
}

function isMissingTable(stderr: string): boolean {
  return stderr.includes("No such file or directory");
}

/** The table as `nft list table` prints it (`-j`: as JSON); null when it does not exist. */
export async function listNftTable(table: NftTable, { json = false } = {}): Promise<string | null> {
  const args = [...(json ? ["-j"] : []), "list", "table", "inet", table.name];
  const result = await nft(table, args);
  if (result.exitCode === 0) return result.stdout;
  if (isMissingTable(result.stderr)) return null;
  throw nftError(args, result);
}

/** Applies a batch of nft commands atomically, in one process. */
export async function applyNftBatch(table: NftTable, batch: string): Promise<void> {
  const args = ["-f", "-"];
  const result = await nft(table, args, `${batch}\n`);
  if (result.exitCode !== 0) throw nftError(args, result, batch);
}

/** Deletes the table; nothing to do when it does not exist. */
export async function deleteNftTable(table: NftTable): Promise<void> {
  const args = ["delete", "table", "inet", table.name];
  const result = await nft(table, args);
  if (result.exitCode !== 0 && !isMissingTable(result.stderr)) throw nftError(args, result);
}
