import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Computer, SoftwareInstance, SoftwareRelease } from "../provider/index.js";
import { TestNetwork } from "../test/hosts/network.js";
import { TestStack } from "../test/pulumi/harness.js";
import { startNetworkMaster } from "../test/support/network-master.js";

// The provider's figures: real `pulumi up` and `pulumi preview` (Automation API, file backend) of
// a stack of one Computer (a fresh test host bootstrapped over SSH), one SoftwareRelease and N
// SoftwareInstances, each waited for until it runs and has published its URL.

export interface ProviderBenchResult {
  instances: number;
  /** From an empty stack and a bare host: bootstrap, build, N instances started. */
  firstUpMs: number;
  /** Nothing changed: preview, then up. */
  noOpPreviewMs: number;
  noOpUpMs: number;
  /** Every instance's parameters changed: N in-place updates, each waited for. */
  parameterUpdateUpMs: number;
  destroyMs: number;
}

/** Built as dist/bench/provider.js: the repository is two levels up. */
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export async function benchProvider(
  options: { instances: number },
  log: (line: string) => void,
): Promise<ProviderBenchResult> {
  if (process.getuid?.() !== 0) throw new Error("the provider benchmark creates a test host: run it as root");
  const release = join(repoRoot, "examples/software/hello-web/software.cfg");
  const directory = await mkdtemp(join(tmpdir(), "bench-provider-"));
  const network = await TestNetwork.create();
  const running = await startNetworkMaster(network, directory);
  let stack: TestStack | undefined;
  try {
    const host = await network.addHost();
    let greeting = "Hello";
    stack = await TestStack.create({
      projectName: "bench-provider",
      program: async () => {
        const computer = new Computer("node", {
          ssh: { host: host.ipv4, privateKey: host.privateKey, hostKey: host.hostKeyFingerprint },
          partitionCount: options.instances,
        });
        const software = new SoftwareRelease("hello-web", { url: release, computerId: computer.computerId });
        for (let index = 0; index < options.instances; index++) {
          new SoftwareInstance(
            `web-${index}`,
            {
              title: `web-${index}`,
              softwareRelease: software.url,
              parameters: { greeting },
              sla: { computer_guid: software.computerId },
              waitFor: ["url"],
            },
            { dependsOn: software },
          );
        }
      },
      config: running.stackConfig,
    });
    const timed = async (what: string, operation: () => Promise<unknown>) => {
      const begin = performance.now();
      await operation();
      const milliseconds = Math.round(performance.now() - begin);
      log(`${what}: ${milliseconds} ms`);
      return milliseconds;
    };
    const test = stack;
    const firstUpMs = await timed("first pulumi up", () => test.up());
    const noOpPreviewMs = await timed("no-op pulumi preview", () => test.preview());
    const noOpUpMs = await timed("no-op pulumi up", () => test.up());
    greeting = "Bonjour";
    const parameterUpdateUpMs = await timed("pulumi up changing every instance's parameters", () =>
      test.up(),
    );
    const destroyMs = await timed("pulumi destroy", () => test.destroy());
    return {
      instances: options.instances,
      firstUpMs,
      noOpPreviewMs,
      noOpUpMs,
      parameterUpdateUpMs,
      destroyMs,
    };
  } finally {
    await stack?.dispose();
    await running.close();
    await network.destroy();
    await rm(directory, { recursive: true, force: true });
  }
}
