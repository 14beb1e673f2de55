import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { DesiredState } from "../protocol/client.js";

/**
 * The last desired state the master sent, kept on disk (written atomically) so that after a reboot
 * with the master unreachable the node still knows what to run.
 */
export class DesiredStateCache {
  constructor(private readonly path: string) {}

  async load(): Promise<DesiredState | null> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
    // Our own file, written whole by rename: a shape check is enough (and keeps the agent free of
    // the API's schema library).
    try {
      const state = JSON.parse(text) as DesiredState;
      return typeof state.version === "number" &&
        Array.isArray(state.partitions) &&
        Array.isArray(state.software)
        ? state
        : null;
    } catch {
      return null;
    }
  }

  async save(state: DesiredState): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const temporary = `${this.path}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(state), { mode: 0o600 });
    await rename(temporary, this.path);
  }
}
