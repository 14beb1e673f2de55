import { readFile } from "node:fs/promises";

/**
 * The registration token, from `--token-file` (a file, or `-` for standard input) or `--token`.
 * A token on the command line is visible to every user of the host (ps, /proc) while the
 * command runs; scripts pass it on standard input.
 */
export async function readToken(
  options: { token?: string; tokenFile?: string },
  need: { required: true },
): Promise<string>;
export async function readToken(
  options: { token?: string; tokenFile?: string },
  need: { required: false },
): Promise<string | undefined>;
export async function readToken(
  options: { token?: string; tokenFile?: string },
  need: { required: boolean },
): Promise<string | undefined> {
  if (options.token !== undefined && options.tokenFile !== undefined) {
    throw new Error("give the registration token once: --token or --token-file, not both");
  }
  if (options.tokenFile === undefined) {
    if (options.token === undefined && need.required) {
      throw new Error(
        "give the registration token: --token-file FILE (or --token-file - to read it from standard input), or --token TOKEN",
      );
    }
    return options.token;
  }
  const source = options.tokenFile === "-" ? "standard input" : options.tokenFile;
  const text =
    options.tokenFile === "-" ? await readStandardInput() : await readFile(options.tokenFile, "utf8");
  const token = text.trim();
  if (!token || /\s/.test(token)) {
    throw new Error(`${source} must hold the registration token alone, on one line`);
  }
  return token;
}

async function readStandardInput(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
