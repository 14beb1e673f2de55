import { execa } from "execa";
import { SYSTEM_PATH } from "../run-as.js";

/**
 * Runs a system tool (ip, useradd, ...) with the system PATH and C messages, and fails with what
 * the tool printed: format's errors must name the real cause.
 */
export async function runTool(file: string, args: string[], input?: string): Promise<string> {
  const result = await execa(file, args, {
    input,
    reject: false,
    extendEnv: false,
    env: { PATH: SYSTEM_PATH, LC_ALL: "C" },
  });
  if (result.exitCode === undefined) {
    throw new Error(`cannot run ${file}: ${result.shortMessage} (is it installed and on ${SYSTEM_PATH}?)`);
  }
  if (result.exitCode !== 0) {
    throw new ToolError(file, result.exitCode, `${result.stderr}\n${result.stdout}`.trim());
  }
  return result.stdout;
}

export class ToolError extends Error {
  constructor(
    readonly tool: string,
    readonly exitCode: number,
    readonly output: string,
  ) {
    super(`${tool} failed (exit ${exitCode}): ${output}`);
    this.name = "ToolError";
  }
}
