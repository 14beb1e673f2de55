import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import type { MasterConnection } from "./client.js";

/**
 * A person's client configuration (what `slap master start` writes as admin.json: url, ca,
 * certificate, key), from `--config`, `$SLAP_CONFIG` or `~/.slap/config.json`; null when none exists.
 */
export async function loadClientConfig(path?: string): Promise<MasterConnection | null> {
  const candidates = path ? [path] : [process.env.SLAP_CONFIG, join(homedir(), ".slap", "config.json")];
  for (const candidate of candidates) {
    if (!candidate) continue;
    let text: string;
    try {
      text = await readFile(candidate, "utf8");
    } catch (error) {
      if (path)
        throw new Error(`cannot read the client configuration ${candidate}: ${(error as Error).message}`);
      continue;
    }
    const config = JSON.parse(text) as Partial<MasterConnection>;
    if (typeof config.url !== "string")
      throw new Error(`${candidate} has no "url": it is not a slap client configuration`);
    return config as MasterConnection;
  }
  return null;
}
