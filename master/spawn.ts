import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";

export interface MasterProcess {
  child: ResultPromise;
  /** The URL the master printed once it listened. */
  url: string;
}

// The built CLI, whether this module runs built (dist/master) or from source (tests).
const CLI = fileURLToPath(
  new URL(import.meta.url.includes("/dist/") ? "../cli/main.js" : "../dist/cli/main.js", import.meta.url),
);

/**
 * Runs `slap master start ARGS` as a child process (of the built CLI) and resolves once it
 * listens: for benchmarks, crash tests and the demo, which need a master they can kill.
 */
export async function spawnMaster(args: string[], env: Record<string, string> = {}): Promise<MasterProcess> {
  const child = execa("node", [CLI, "master", "start", ...args], { env, reject: false });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      const line = chunk.toString().trim();
      if (line.startsWith("http")) resolve(line);
    });
    child.on("exit", (code) => reject(new Error(`the master exited (${code}) before listening: ${stderr}`)));
  });
  return { child, url };
}
