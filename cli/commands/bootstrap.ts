import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { MasterClient } from "../../protocol/client.js";
import { loadClientConfig } from "../../protocol/client-config.js";
import type { ProgressEvent, SshTarget } from "../../slave-bootstrap/index.js";
import { readToken } from "../token.js";

interface BootstrapCommandOptions {
  master?: string;
  token?: string;
  tokenFile?: string;
  identity?: string;
  hostKey?: string;
  trustOnFirstUse?: boolean;
  ca?: string;
  partitions: string;
  interface: string;
  ipv4Network: string;
  tap: boolean;
  computer?: string;
  restoreFrom?: string;
  wheelhouse?: string;
  uninstall?: boolean;
  keepData?: boolean;
  config?: string;
}

/** `ssh://USER@HOST[:PORT]` (IPv6 hosts in brackets). */
function parseSshUrl(url: string): { user: string; host: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`'${url}' is not ssh://USER@HOST[:PORT]`);
  }
  if (parsed.protocol !== "ssh:" || !parsed.username || !parsed.hostname) {
    throw new Error(`'${url}' is not ssh://USER@HOST[:PORT]`);
  }
  return {
    user: decodeURIComponent(parsed.username),
    host: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port ? Number(parsed.port) : 22,
  };
}

function printProgress(event: ProgressEvent): void {
  if (event.status === "started") return;
  console.error(`${event.status.padEnd(9)} ${event.step}${event.detail ? `: ${event.detail}` : ""}`);
}

/** `slap bootstrap`: turns a host reachable over SSH into a node, or (--uninstall) back. */
export function registerBootstrapCommand(program: Command): void {
  program
    .command("bootstrap")
    .description("make a host reachable over SSH a registered, formatted node running the agent (or undo it)")
    .argument("<target>", "ssh://USER@HOST[:PORT]: root, or a user with password-less sudo")
    .option("--master <url>", "the master's URL")
    .option(
      "--token-file <file>",
      "a file holding the one-time registration token, or - for standard input (needed until the host is registered)",
    )
    .option(
      "--token <token>",
      "the registration token itself (visible to other users of this machine while it runs: prefer --token-file)",
    )
    .option("--identity <file>", "the SSH private key (default: the agent at $SSH_AUTH_SOCK)")
    .option("--host-key <fingerprint>", "the host's key, SHA256:... as ssh-keygen -lf prints it")
    .option("--trust-on-first-use", "accept the key the host presents (printed) when none is pinned")
    .option("--ca <file>", "the master's CA certificate (PEM; default: the client configuration's)")
    .option("--partitions <n>", "partitions to format", "10")
    .option("--interface <name>", "the interface carrying the partitions' addresses", "eth0")
    .option("--ipv4-network <cidr>", "the partitions' local IPv4 network", "10.0.0.0/16")
    .option("--no-tap", "no tap interface per partition")
    .option("--computer <id>", "the computer this host must be (to rebuild a lost one)")
    .option(
      "--restore-from <url>",
      "with --computer: where the instances find their backups (given to each as restore-from)",
    )
    .option("--wheelhouse <dir>", "wheels of the node's Python environment (default $SLAPOS_WHEELHOUSE)")
    .option("--uninstall", "remove the node: agent, instances, users, addresses, taps, files")
    .option("--keep-data", "with --uninstall: keep the partitions' directories")
    .option(
      "--config <file>",
      "a client configuration (admin.json): the master's CA, and with --uninstall who deregisters the computer (default $SLAP_CONFIG, ~/.slap/config.json)",
    )
    .action(async (url: string, options: BootstrapCommandOptions) => {
      const { user, host, port } = parseSshUrl(url);
      const target: SshTarget = {
        host,
        port,
        user,
        privateKey: options.identity ? await readFile(options.identity, "utf8") : undefined,
        hostKey: options.hostKey,
        trustOnFirstUse: options.trustOnFirstUse,
      };
      if (options.uninstall) {
        const { uninstall } = await import("../../slave-bootstrap/uninstall.js");
        const result = await uninstall({ target, keepInstanceData: options.keepData }, printProgress);
        const connection = await loadClientConfig(options.config);
        if (result.computerId && connection) {
          const client = new MasterClient(connection);
          try {
            await client.deregisterComputer(result.computerId);
          } finally {
            await client.close();
          }
          console.error(`deregistered computer ${result.computerId}`);
        } else if (result.computerId) {
          console.error(
            `computer ${result.computerId} is still registered on the master: deregister it with a client configuration (--config)`,
          );
        }
        console.log(JSON.stringify(result));
        return;
      }
      if (!options.master) throw new Error("--master URL is required");
      const partitionCount = Number(options.partitions);
      if (!Number.isInteger(partitionCount) || partitionCount < 1) {
        throw new Error(`--partitions must be a positive integer, not '${options.partitions}'`);
      }
      const wheelhouse = options.wheelhouse ?? process.env.SLAPOS_WHEELHOUSE;
      if (!wheelhouse)
        throw new Error("--wheelhouse DIR (or $SLAPOS_WHEELHOUSE, set by scripts/setup.sh) is required");
      const masterCa = options.ca
        ? await readFile(options.ca, "utf8")
        : ((await loadClientConfig(options.config))?.ca ?? "");
      if (options.master.startsWith("https:") && !masterCa) {
        throw new Error(
          "the master's CA is needed for an https master (the node checks the master's certificate with it): --ca FILE or --config admin.json",
        );
      }
      const { bootstrap } = await import("../../slave-bootstrap/index.js");
      const result = await bootstrap(
        {
          target,
          masterUrl: options.master,
          masterCa,
          token: await readToken(options, { required: false }),
          computerId: options.computer,
          restoreFrom: options.restoreFrom,
          partitionCount,
          interfaceName: options.interface,
          ipv4LocalNetwork: options.ipv4Network,
          createTap: options.tap,
          wheelhouse,
          agentBundle: fileURLToPath(new URL("../../agent/slap-node.mjs", import.meta.url)),
        },
        printProgress,
      );
      console.log(
        JSON.stringify({ computerId: result.computerId, hostKey: result.hostKey, changed: result.changed }),
      );
    });
}
