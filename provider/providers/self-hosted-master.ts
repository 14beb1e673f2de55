import { fileURLToPath } from "node:url";
import type * as pulumi from "@pulumi/pulumi";
import type { ClientConfig } from "../../master/server.js";
import { type Instance, MasterApiError, MasterClient } from "../../protocol/client.js";
import { bootstrap } from "../../slave-bootstrap/index.js";
import { ensureNodeRuntime } from "../../slave-bootstrap/install.js";
import { REMOTE } from "../../slave-bootstrap/layout.js";
import { inspectHost } from "../../slave-bootstrap/preflight.js";
import {
  ensureRelease,
  ensureSeedMaster,
  handOverSeedState,
  REMOVE_SELF_HOSTING,
  readSeedAdmin,
  removeHandover,
  repointAgent,
  seedUrl,
  stopSeedMaster,
} from "../../slave-bootstrap/seed.js";
import { RemoteHost, UnreachableHostError } from "../../slave-bootstrap/ssh.js";
import { uninstall } from "../../slave-bootstrap/uninstall.js";
import type { Timeouts } from "../dynamic.js";
import type { MasterSettings } from "../master.js";
import { type Failure, IMPORT_UNSUPPORTED, replacedKeys, UNKNOWN } from "./check.js";
import { type SshConnection, targetOf } from "./computer.js";
import { progress, waitUntil } from "./wait.js";

export type MasterDatabase = "postgresql" | "embedded";

export interface SelfHostedMasterInputs {
  ssh: SshConnection;
  /** The master instance's title (default `slapos-master`). */
  title?: string;
  partitionCount?: number;
  interfaceName?: string;
  ipv4LocalNetwork?: string;
  createTap?: boolean;
  database?: MasterDatabase;
  port?: number;
  seedPort?: number;
  wheelhouse?: string;
  __timeouts?: Timeouts;
}

export interface SelfHostedMasterOutputs extends SelfHostedMasterInputs {
  computerId: string;
  hostKey: string;
  /** The master instance's id, on itself. */
  instanceId: string;
  /** Its database instance (a child in its tree), when it has one. */
  databaseInstanceId: string | null;
  /** The master's URL (its instance's IPv6 address) and CA certificate. */
  url: string;
  caCertificate: string;
  /** What other resources take as their `master`: URL, CA and the admin's identity. */
  master: Required<MasterSettings>;
}

const DEFAULTS = {
  title: "slapos-master",
  partitionCount: 4,
  database: "postgresql" as MasterDatabase,
  port: 8443,
  seedPort: 8443,
};
const DEFAULT_TIMEOUT_SECONDS = 20 * 60;

// The releases this package ships next to the compiled provider (npm run build makes them).
const RELEASES = {
  master: fileURLToPath(new URL("../../master-release/", import.meta.url)),
  postgresql: fileURLToPath(new URL("../../postgresql-release/", import.meta.url)),
};

const subjectOf = (inputs: SelfHostedMasterInputs) => `self-hosted master ${inputs.ssh.host}`;

function settingsOf(admin: ClientConfig, url: string): Required<MasterSettings> {
  if (!admin.ca || !admin.certificate || !admin.key) {
    throw new Error("the seed master's admin.json holds no identity: was it started with --insecure-http?");
  }
  return { url, caCertificate: admin.ca, certificate: admin.certificate, privateKey: admin.key };
}

function clientOf(settings: Required<MasterSettings>): MasterClient {
  return new MasterClient(
    {
      url: settings.url,
      ca: settings.caCertificate,
      certificate: settings.certificate,
      key: settings.privateKey,
    },
    { timeoutMs: 15_000 },
  );
}

async function withClient<T>(
  settings: Required<MasterSettings>,
  work: (client: MasterClient) => Promise<T>,
): Promise<T> {
  const client = clientOf(settings);
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

/** The master instance and its database child, as the master at `settings` lists them. */
async function masterTree(client: MasterClient, title: string) {
  const instances = await client.listInstances();
  const master = instances.find((instance) => instance.title === title && instance.parentId === null);
  const database = master ? instances.find((instance) => instance.parentId === master.id) : undefined;
  return { master, database };
}

function describe(instance: Instance | undefined): string {
  if (!instance) return "not requested yet";
  const where = instance.partitionReference ? ` on ${instance.partitionReference}` : "";
  const error = instance.errorLog ? `; last error: ${instance.errorLog.trim().split("\n").at(-1)}` : "";
  return `${instance.status}${where}${error}`;
}

async function hostMasterUrl(remote: RemoteHost): Promise<string | null> {
  const line = await remote.run(`sed -n 's/^master_url *= *//p' ${REMOTE.config} 2>/dev/null`, {
    sudo: true,
  });
  return line.stdout.trim() || null;
}

/**
 * From a host reachable over SSH to a master running as an instance on it: seed master, node,
 * master instance (and its database), handover of the seed's state, node re-pointed. Every step
 * checks before it acts, so a run stopped anywhere is finished by the next one.
 */
async function converge(inputs: SelfHostedMasterInputs): Promise<SelfHostedMasterOutputs> {
  const subject = subjectOf(inputs);
  const title = inputs.title ?? DEFAULTS.title;
  const timeoutSeconds = inputs.__timeouts?.create ?? DEFAULT_TIMEOUT_SECONDS;
  const wheelhouse = inputs.wheelhouse ?? process.env.SLAPOS_WHEELHOUSE;
  if (!wheelhouse) {
    throw new Error(
      `${subject}: no wheelhouse for the node's Python environment: set the 'wheelhouse' input or SLAPOS_WHEELHOUSE (scripts/setup.sh builds one)`,
    );
  }
  const step = (message: string) => progress(subject, message);
  const target = targetOf(inputs.ssh);
  const remote = await RemoteHost.connect(target);
  try {
    const facts = await inspectHost(remote);
    const runtime = await ensureNodeRuntime(remote, facts);
    const master = await ensureRelease(remote, "master", RELEASES.master);
    const postgresql = await ensureRelease(remote, "postgresql", RELEASES.postgresql);
    step(`releases: ${master.detail}; ${postgresql.detail}`);
    const seed = { node: runtime.node, address: inputs.ssh.host, port: inputs.seedPort ?? DEFAULTS.seedPort };
    const seedAt = seedUrl(seed);
    const current = await hostMasterUrl(remote);
    // The seed keeps its admin.json after the handover: the admin is the same on the master instance.
    const seedMaster = await ensureSeedIfNeeded(remote, seed, current === null || current === seedAt);
    const admin = seedMaster.admin;
    if (current === null || current === seedAt) {
      step(`seed master at ${seedAt}`);
      const seedSettings = settingsOf(admin, seedAt);
      const node = await bootstrap(
        {
          target,
          masterUrl: seedAt,
          masterCa: seedSettings.caCertificate,
          token: () =>
            withClient(seedSettings, async (client) => (await client.createRegistrationToken()).token),
          partitionCount: inputs.partitionCount ?? DEFAULTS.partitionCount,
          interfaceName: inputs.interfaceName,
          ipv4LocalNetwork: inputs.ipv4LocalNetwork,
          createTap: inputs.createTap,
          wheelhouse,
          agentBundle: fileURLToPath(new URL("../../agent/slap-node.mjs", import.meta.url)),
        },
        (event) => {
          if (event.status !== "started")
            step(`node: ${event.step} ${event.status}${event.detail ? `: ${event.detail}` : ""}`);
        },
      );
      const instance = await withClient(seedSettings, async (client) => {
        await client.supply(node.computerId, master.url);
        const database = inputs.database ?? DEFAULTS.database;
        if (database === "postgresql") await client.supply(node.computerId, postgresql.url);
        await client.requestInstance({
          title,
          softwareReleaseUrl: master.url,
          parameters: {
            database,
            "postgresql-release": postgresql.url,
            port: String(inputs.port ?? DEFAULTS.port),
            "seed-backup": `${REMOTE.handover}/seed-backup.json`,
          },
          sla: { computer_guid: node.computerId },
        });
        return waitUntil<{ partition: string; url: string }>(
          subject,
          "the master instance to be deployed",
          timeoutSeconds,
          async () => {
            const tree = await masterTree(client, title);
            const url = tree.master?.connectionParameters.url;
            if (!tree.master?.partitionReference || !url)
              return { waiting: `master instance: ${describe(tree.master)}` };
            if (database === "postgresql" && tree.database?.status !== "ready")
              return { waiting: `database instance: ${describe(tree.database)}` };
            return { done: { partition: tree.master.partitionReference, url } };
          },
        );
      });
      await stopSeedMaster(remote);
      step("seed master stopped");
      await handOverSeedState(remote, runtime.node, instance.partition.replace(/^slappart/, "slapuser"));
      step("seed state handed over");
      await repointAgent(remote, instance.url, seedSettings.caCertificate);
      step(`node re-pointed to ${instance.url}`);
    }
    const url = current !== null && current !== seedAt ? current : ((await hostMasterUrl(remote)) ?? "");
    const settings = settingsOf(admin, url);
    const tree = await withClient(settings, (client) =>
      waitUntil<Awaited<ReturnType<typeof masterTree>>>(
        subject,
        "the self-hosted master to serve and run itself",
        timeoutSeconds,
        async () => {
          try {
            const found = await masterTree(client, title);
            if (found.master?.status !== "ready")
              return { waiting: `master instance: ${describe(found.master)}` };
            return { done: found };
          } catch (error) {
            return { waiting: `${url} does not answer yet (${(error as Error).message})` };
          }
        },
      ),
    );
    await removeHandover(remote);
    step(`serving at ${url}`);
    return {
      ...inputs,
      computerId: tree.master?.computerId ?? "",
      hostKey: remote.hostKey,
      instanceId: tree.master?.id ?? "",
      databaseInstanceId: tree.database?.id ?? null,
      url,
      caCertificate: settings.caCertificate,
      master: settings,
    };
  } finally {
    remote.close();
  }
}

/** The seed runs until the handover; afterwards only its admin.json is read. */
async function ensureSeedIfNeeded(
  remote: RemoteHost,
  seed: Parameters<typeof ensureSeedMaster>[1],
  beforeHandover: boolean,
): Promise<{ admin: ClientConfig }> {
  if (beforeHandover) return ensureSeedMaster(remote, seed);
  return { admin: await readSeedAdmin(remote) };
}

export class SelfHostedMasterProvider
  implements pulumi.dynamic.ResourceProvider<SelfHostedMasterInputs, SelfHostedMasterOutputs>
{
  async check(_olds: SelfHostedMasterInputs, news: SelfHostedMasterInputs) {
    const failures: Failure[] = [];
    const ssh = news.ssh as SshConnection | typeof UNKNOWN;
    if (ssh !== UNKNOWN && (!ssh || typeof ssh !== "object" || !ssh.host))
      failures.push({ property: "ssh.host", reason: "the host to reach over SSH is required" });
    const database = news.database as string | undefined;
    if (
      database !== undefined &&
      database !== UNKNOWN &&
      database !== "postgresql" &&
      database !== "embedded"
    )
      failures.push({ property: "database", reason: "database must be 'postgresql' or 'embedded'" });
    for (const key of ["port", "seedPort"] as const) {
      const port = news[key] as number | typeof UNKNOWN | undefined;
      if (port !== undefined && port !== UNKNOWN && (!Number.isInteger(port) || port < 1 || port > 65_535))
        failures.push({ property: key, reason: `${key} must be a port number (1-65535)` });
    }
    return { inputs: news, failures };
  }

  async diff(_id: string, olds: SelfHostedMasterOutputs, news: SelfHostedMasterInputs) {
    const { replaces, unknown } = replacedKeys([
      ["ssh.host", olds.ssh.host, news.ssh.host],
      ["ssh.port", olds.ssh.port ?? 22, news.ssh.port ?? 22],
      ["title", olds.title ?? DEFAULTS.title, news.title ?? DEFAULTS.title],
      ["database", olds.database ?? DEFAULTS.database, news.database ?? DEFAULTS.database],
      ["port", olds.port ?? DEFAULTS.port, news.port ?? DEFAULTS.port],
      ["interfaceName", olds.interfaceName, news.interfaceName],
      ["ipv4LocalNetwork", olds.ipv4LocalNetwork, news.ipv4LocalNetwork],
      ["createTap", olds.createTap ?? true, news.createTap ?? true],
      [
        "partitionCount",
        olds.partitionCount ?? DEFAULTS.partitionCount,
        news.partitionCount ?? DEFAULTS.partitionCount,
      ],
    ]);
    return { changes: replaces.length > 0 || unknown, replaces };
  }

  async create(inputs: SelfHostedMasterInputs) {
    const outputs = await converge(inputs);
    return { id: outputs.computerId, outs: outputs };
  }

  async update(_id: string, _olds: SelfHostedMasterOutputs, news: SelfHostedMasterInputs) {
    return { outs: await converge(news) };
  }

  /** Whether the master still serves and runs itself. */
  async read(id: string, props?: SelfHostedMasterOutputs) {
    if (!props) throw new Error(IMPORT_UNSUPPORTED);
    const tree = await withClient(props.master, (client) =>
      masterTree(client, props.title ?? DEFAULTS.title),
    ).catch((error) => {
      if (error instanceof MasterApiError) throw error;
      throw new Error(
        `${subjectOf(props)}: ${props.master.url} does not answer: ${(error as Error).message}`,
      );
    });
    if (!tree.master) return {};
    return {
      id,
      props: { ...props, instanceId: tree.master.id, databaseInstanceId: tree.database?.id ?? null },
    };
  }

  /** Uninstalls the host: the master, its database and the node go together. */
  async delete(_id: string, props: SelfHostedMasterOutputs) {
    const subject = subjectOf(props);
    const target = { ...targetOf(props.ssh), connectAttempts: 2, connectTimeoutMs: 10_000 };
    try {
      // The seed first: a run stopped before the handover leaves it running.
      const remote = await RemoteHost.connect(target);
      try {
        await remote.runOrThrow(REMOVE_SELF_HOSTING, { sudo: true });
      } finally {
        remote.close();
      }
      await uninstall({ target }, (event) => {
        if (event.status !== "started") progress(subject, `uninstall: ${event.step} ${event.status}`);
      });
    } catch (error) {
      if (!(error instanceof UnreachableHostError)) throw error;
      progress(subject, `warning: the host is gone (${error.message}); nothing left to remove`);
    }
  }
}
