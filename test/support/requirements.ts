import { execaSync } from "execa";
import { describe } from "vitest";

/** A real part a test needs, and how to check for it. */
export interface Requirement {
  /** Why the test needs it, printed when it is missing. */
  why: string;
  isMet: () => boolean;
}

function commandExists(command: string): boolean {
  return execaSync("sh", ["-c", `command -v ${command}`], { reject: false }).exitCode === 0;
}

export const requires = {
  root: (why: string): Requirement => ({ why: `root: ${why}`, isMet: () => process.getuid?.() === 0 }),
  command: (command: string, why: string): Requirement => ({
    why: `'${command}' on PATH: ${why} (scripts/setup.sh installs it)`,
    isMet: () => commandExists(command),
  }),
  env: (name: string, why: string): Requirement => ({
    why: `$${name}: ${why} (scripts/setup.sh sets it)`,
    isMet: () => Boolean(process.env[name]),
  }),
};

/**
 * `describe` that runs only when every requirement is met, and otherwise says which are missing
 * and why, instead of failing obscurely half-way.
 */
export function describeWith(requirements: Requirement[], name: string, body: () => void): void {
  const missing = requirements.filter((requirement) => !requirement.isMet());
  if (missing.length > 0) {
    console.warn(`skipping "${name}": needs ${missing.map((requirement) => requirement.why).join("; ")}`);
  }
  describe.skipIf(missing.length > 0)(name, body);
}
