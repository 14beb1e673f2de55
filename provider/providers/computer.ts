import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type * as pulumi from "@pulumi/pulumi";
import { ComputerSettings } from "../../protocol/api.js";
import {
  type Computer,
  type ComputerSettings as ComputerSettingsBody,
  MasterApiError,
  type MasterClient,
} from "../../protocol/client.js";
import { bootstrap } from "../../slave-bootstrap/index.js";
import { REMOTE } from "../../slave-bootstrap/layout.js";
import { type SshTarget, UnreachableHostError } from "../../slave-bootstrap/ssh.js";
import { uninstall } from "../../slave-bootstrap/uninstall.js";
import type { Timeouts } from "../dynamic.js";
import type { MasterSettings } from "../master.js";
import {
  anyChanged,
  type Failure,
  IMPORT_UNSUPPORTED,
  replacedKeys,
  schemaFailures,
  UNKNOWN,
} from "./check.js";
import { type StackSettings, withMaster } from "./connection.js";
import { progress } from "./wait.js";

export interface SshConnection {
  host: string;
  port?: number;
  user?: string;
  sudo?: boolean;
  privateKey?: string;
  hostKey: string;
}

/** Hardware the marketplace matches SLA conditions against (`cpu_architecture`, `cpu_cores`, `memory_mb`, `disk_gb`). */
export type ComputerCapabilities = NonNullable<ComputerSettingsBody["capabilities"]>;

/** Whose requests may be placed on a computer: its owner's (`personal`), its owner's organisations' members', anyone's (`open`). */
export type AllocationScope = NonNullable<ComputerSettingsBody["allocationScope"]>;

/** What the master applies when the input is absent: a computer runs only its owner's requests. */
const DEFAULT_SCOPE: AllocationScope = "personal";

export interface ComputerInputs {
  ssh: SshConnection;
  title?: string;
  partitionCount: number;
  interfaceName?: string;
  ipv4LocalNetwork?: string;
  createTap?: boolean;
  region?: string;
  capabilities?: ComputerCapabilities;
  pricePerHour?: number;
  allocationScope?: AllocationScope;
  computerId?: string;
  restoreFrom?: string;
  wheelhouse?: string;
  master?: MasterSettings;
  __timeouts?: Timeouts;
}

export interface PartitionInfo {
  reference: string;
  user: string;
  path: string;
  ipv4: string[];
  ipv6: string[];
  tap: string | null;
}

export interface ComputerOutputs extends ComputerInputs {
  computerId: string;
  /** The host key the host presented. */
  hostKey: string;
  /** The agent bundle installed (sha256, 16 hex): a newer package upgrades the agent in place. */
  agentVersion: string;
  partitions: PartitionInfo[];
}

// The agent bundle of this package, next to the compiled provider (dist/agent/slap-node.mjs).
const AGENT_BUNDLE = fileURLToPath(new URL("../../agent/slap-node.mjs", import.meta.url));

async function agentVersion(): Promise<string> {
  return createHash("sha256")
    .update(await readFile(AGENT_BUNDLE))
    .digest("hex")
    .slice(0, 16);
}

const subjectOf = (inputs: ComputerInputs) => `computer ${inputs.title ?? inputs.ssh.host}`;

export function targetOf(ssh: SshConnection): SshTarget {
  return {
    host: ssh.host,
    port: ssh.port,
    user: ssh.user ?? "root",
    privateKey: ssh.privateKey,
    hostKey: ssh.hostKey,
  };
}

/** The node's partitions as the master records them, with the user and path format gave each. */
export function partitionsOf(computer: Computer): PartitionInfo[] {
  return computer.partitions.map((partition) => ({
    reference: partition.reference,
    user: partition.reference.replace(/^slappart/, "slapuser"),
    path: `${REMOTE.instanceRoot}/${partition.reference}`,
    ipv4: partition.addresses.map((a) => a.address).filter((address) => !address.includes(":")),
    ipv6: partition.addresses.map((a) => a.address).filter((address) => address.includes(":")),
    tap: partition.tap,
  }));
}

/** Bootstraps (or converges) the host, then records the computer's marketplace settings. */
async function converge(stack: StackSettings, inputs: ComputerInputs): Promise<ComputerOutputs> {
  const subject = subjectOf(inputs);
  const wheelhouse = inputs.wheelhouse ?? process.env.SLAPOS_WHEELHOUSE;
  if (!wheelhouse) {
    throw new Error(
      `${subject}: no wheelhouse for the node's Python environment: set the 'wheelhouse' input or SLAPOS_WHEELHOUSE (scripts/setup.sh builds one)`,
    );
  }
  return withMaster(inputs.master, stack, async (client, connection) => {
    const result = await bootstrap(
      {
        target: targetOf(inputs.ssh),
        masterUrl: connection.url,
        masterCa: connection.ca ?? "",
        // Made only if the host is not registered yet: a converging node needs none.
        token: async () =>
          (await client.createRegistrationToken(inputs.computerId ? { computerId: inputs.computerId } : {}))
            .token,
        computerId: inputs.computerId,
        partitionCount: inputs.partitionCount,
        interfaceName: inputs.interfaceName,
        ipv4LocalNetwork: inputs.ipv4LocalNetwork,
        createTap: inputs.createTap,
        restoreFrom: inputs.restoreFrom,
        wheelhouse,
        agentBundle: AGENT_BUNDLE,
      },
      (event) => {
        if (event.status !== "started")
          progress(subject, `${event.step} ${event.status}${event.detail ? `: ${event.detail}` : ""}`);
      },
    );
    const computer = await client.updateComputer(result.computerId, {
      ...(inputs.title ? { title: inputs.title } : {}),
      ...(inputs.region ? { region: inputs.region } : {}),
      ...(inputs.capabilities ? { capabilities: inputs.capabilities } : {}),
      ...(inputs.pricePerHour !== undefined ? { pricePerPartitionHour: inputs.pricePerHour } : {}),
      // Always sent: removing the input from the program must close the computer again, not
      // leave it open to others.
      allocationScope: inputs.allocationScope ?? DEFAULT_SCOPE,
    });
    return {
      ...inputs,
      computerId: result.computerId,
      hostKey: result.hostKey,
      agentVersion: await agentVersion(),
      partitions: partitionsOf(computer),
    };
  });
}

export async function fetchComputer(client: MasterClient, id: string): Promise<Computer | null> {
  try {
    return await client.getComputer(id);
  } catch (error) {
    if (error instanceof MasterApiError && error.status === 404) return null;
    throw error;
  }
}

export class ComputerProvider implements pulumi.dynamic.ResourceProvider<ComputerInputs, ComputerOutputs> {
  constructor(private readonly stack: StackSettings) {}

  async check(_olds: ComputerInputs, news: ComputerInputs) {
    const failures: Failure[] = [];
    const ssh = news.ssh as SshConnection | typeof UNKNOWN;
    if (ssh !== UNKNOWN) {
      if (!ssh || typeof ssh !== "object" || !ssh.host)
        failures.push({ property: "ssh.host", reason: "the host to reach over SSH is required" });
      else {
        if (ssh.sudo === false && (ssh.user ?? "root") !== "root")
          failures.push({
            property: "ssh.sudo",
            reason: `the node is installed as root: '${ssh.user}' must run commands through password-less sudo (sudo: true), or connect as root`,
          });
        if (ssh.hostKey !== UNKNOWN && !/^SHA256:[A-Za-z0-9+/]{43}=?$/.test(ssh.hostKey ?? ""))
          failures.push({
            property: "ssh.hostKey",
            reason:
              "the host's key is required, as `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it (SHA256:...): host keys are pinned, never trusted blindly",
          });
      }
    }
    const count = news.partitionCount as number | typeof UNKNOWN;
    if (count !== UNKNOWN && (!Number.isInteger(count) || count < 1 || count > 1000)) {
      failures.push({
        property: "partitionCount",
        reason: "partitionCount must be an integer from 1 to 1000",
      });
    }
    failures.push(
      ...schemaFailures(
        ComputerSettings,
        {
          title: news.title,
          region: news.region,
          capabilities: news.capabilities,
          pricePerPartitionHour: news.pricePerHour,
          allocationScope: news.allocationScope,
        },
        { pricePerPartitionHour: "pricePerHour" },
      ),
    );
    return { inputs: news, failures };
  }

  async diff(_id: string, olds: ComputerOutputs, news: ComputerInputs) {
    // What format made cannot be renumbered in place: another host, network or layout is a new computer.
    const { replaces, unknown } = replacedKeys([
      ["ssh.host", olds.ssh.host, news.ssh.host],
      ["ssh.port", olds.ssh.port ?? 22, news.ssh.port ?? 22],
      ["interfaceName", olds.interfaceName ?? "eth0", news.interfaceName ?? "eth0"],
      ["ipv4LocalNetwork", olds.ipv4LocalNetwork, news.ipv4LocalNetwork],
      ["createTap", olds.createTap ?? true, news.createTap ?? true],
      ["computerId", olds.computerId, news.computerId ?? olds.computerId],
      // Format never removes partitions: fewer is another computer.
      ["partitionCount", 0, news.partitionCount < olds.partitionCount ? news.partitionCount : 0],
    ]);
    const inPlace =
      unknown ||
      olds.agentVersion !== (await agentVersion()) ||
      anyChanged([
        [olds.partitionCount, news.partitionCount],
        [olds.ssh, news.ssh],
        [olds.title, news.title],
        [olds.region, news.region],
        [olds.capabilities, news.capabilities],
        [olds.pricePerHour, news.pricePerHour],
        [olds.allocationScope ?? DEFAULT_SCOPE, news.allocationScope ?? DEFAULT_SCOPE],
        [olds.restoreFrom, news.restoreFrom],
        [olds.wheelhouse, news.wheelhouse],
        [olds.master, news.master],
      ]);
    return { changes: replaces.length > 0 || inPlace, replaces };
  }

  async create(inputs: ComputerInputs) {
    const outputs = await converge(this.stack, inputs);
    return { id: outputs.computerId, outs: outputs };
  }

  /** More partitions, settings, credentials or a newer agent: the bootstrap converges the node in place. */
  async update(id: string, _olds: ComputerOutputs, news: ComputerInputs) {
    return { outs: await converge(this.stack, { ...news, computerId: news.computerId ?? id }) };
  }

  /** The master's records: a deregistered computer leaves the stack; settings changed elsewhere show as drift. */
  async read(id: string, props?: ComputerOutputs) {
    if (!props) throw new Error(IMPORT_UNSUPPORTED);
    const computer = await withMaster(props.master, this.stack, (client) => fetchComputer(client, id));
    if (!computer) return {};
    const observed: ComputerOutputs = {
      ...props,
      ...(props.title !== undefined ? { title: computer.title } : {}),
      ...(props.region !== undefined ? { region: computer.region ?? undefined } : {}),
      ...(props.pricePerHour !== undefined ? { pricePerHour: computer.pricePerPartitionHour } : {}),
      // Drift either way shows: opened elsewhere while the program says nothing (personal), or narrowed.
      ...(computer.allocationScope !== (props.allocationScope ?? DEFAULT_SCOPE)
        ? { allocationScope: computer.allocationScope }
        : {}),
      partitions: partitionsOf(computer),
    };
    const { computerId: _, hostKey: __, agentVersion: ___, partitions: ____, ...inputs } = observed;
    // The SDK types `inputs` as outputs; the engine stores them as the resource's inputs.
    return { id, props: observed, inputs: inputs as ComputerOutputs };
  }

  /** Uninstalls the node and retires the computer; a host that is gone only gets a warning. */
  async delete(id: string, props: ComputerOutputs) {
    const subject = subjectOf(props);
    try {
      // A host that is gone must not hold the destroy up for long: two tries of 10 s.
      await uninstall(
        { target: { ...targetOf(props.ssh), connectAttempts: 2, connectTimeoutMs: 10_000 } },
        (event) => {
          if (event.status !== "started") progress(subject, `uninstall: ${event.step} ${event.status}`);
        },
      );
    } catch (error) {
      if (!(error instanceof UnreachableHostError)) throw error;
      progress(
        subject,
        `warning: the host is gone (${error.message}); retiring the computer on the master anyway`,
      );
    }
    await withMaster(props.master, this.stack, async (client) => {
      try {
        await client.deregisterComputer(id);
      } catch (error) {
        if (!(error instanceof MasterApiError && error.status === 404)) throw error;
      }
    });
  }
}
