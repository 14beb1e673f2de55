import { type ChildProcess, fork } from "node:child_process";
import { dirname, resolve } from "node:path";
import type { PoolOptions, PoolRunnerInitializer, PoolWorker, WorkerRequest } from "vitest/node";

const STOP_GRACE_MS = 500;

/**
 * Vitest's process pool with the test files run by another Node binary than the one running
 * Vitest, that binary's directory first on their PATH (so the Pulumi CLI they start, and the
 * engine's plugins, run on it too). The worker speaks to Vitest over Node's IPC with V8's
 * serialization, which Node 20 and 24 read from each other.
 */
export function forksOnNode(name: string, node: string): PoolRunnerInitializer {
  return { name, createPoolWorker: (options) => new ForkOnNode(name, node, options) };
}

class ForkOnNode implements PoolWorker {
  readonly cacheFs = true;
  private child: ChildProcess | undefined;

  constructor(
    readonly name: string,
    private readonly node: string,
    private readonly options: PoolOptions,
  ) {}

  private get process(): ChildProcess {
    if (!this.child) throw new Error(`the ${this.name} test worker was stopped or never started`);
    return this.child;
  }

  on(event: string, callback: (argument: unknown) => void): void {
    this.process.on(event, callback);
  }

  off(event: string, callback: (argument: unknown) => void): void {
    this.process.off(event, callback);
  }

  send(message: WorkerRequest): void {
    this.process.send(message);
  }

  deserialize(data: unknown): unknown {
    return data;
  }

  async start(): Promise<void> {
    const { env, execArgv, distPath } = this.options;
    this.child ??= fork(resolve(distPath, "workers/forks.js"), [], {
      execPath: this.node,
      execArgv,
      env: { ...env, PATH: `${dirname(this.node)}:${env.PATH ?? process.env.PATH}` },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
  }

  async stop(): Promise<void> {
    const child = this.process;
    const exited = new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) done();
      else child.once("exit", () => done());
    });
    const kill = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    child.kill();
    await exited;
    clearTimeout(kill);
    this.child = undefined;
  }
}
