import type * as pulumi from "@pulumi/pulumi";
import { InstanceRequest, type InstanceRequestBody } from "../../protocol/api.js";
import { type Instance, MasterApiError, type MasterClient } from "../../protocol/client.js";
import type { Timeouts } from "../dynamic.js";
import type { MasterSettings } from "../master.js";
import {
  anyChanged,
  checkRecord,
  createdButNotReady,
  type Failure,
  IMPORT_UNSUPPORTED,
  replacedKeys,
  schemaFailures,
  UNKNOWN,
} from "./check.js";
import { type StackSettings, withMaster } from "./connection.js";
import { logTail, type Poll, waitUntil } from "./wait.js";

export type InstanceState = "started" | "stopped";

export interface SoftwareInstanceInputs {
  title: string;
  softwareRelease: string;
  softwareType?: string;
  parameters?: Record<string, string>;
  sla?: Record<string, string>;
  shared?: boolean;
  sharingScope?: InstanceRequestBody["sharingScope"];
  state?: InstanceState;
  waitFor?: string[];
  master?: MasterSettings;
  __timeouts?: Timeouts;
}

export interface SoftwareInstanceOutputs extends SoftwareInstanceInputs {
  instanceId: string;
  computerId: string | null;
  partitionReference: string | null;
  ipList: string[];
  connectionParameters: Record<string, string>;
  status: string;
}

const DEFAULT_TIMEOUT_SECONDS = 600;

function subjectOf(inputs: { title: string }): string {
  return `instance '${inputs.title}'`;
}

/** What the master holds for the instance, as outputs. */
function outputsOf(inputs: SoftwareInstanceInputs, instance: Instance): SoftwareInstanceOutputs {
  return {
    ...inputs,
    instanceId: instance.id,
    computerId: instance.computerId,
    partitionReference: instance.partitionReference,
    ipList: instance.ipList,
    connectionParameters: instance.connectionParameters,
    status: instance.status,
  };
}

/** One look at the instance: done when it runs as asked and publishes every awaited key. */
function pollInstance(
  subject: string,
  instance: Instance,
  state: InstanceState,
  waitFor: string[],
): Poll<Instance> {
  if (instance.status === "error") {
    throw new Error(
      `${subject} failed to deploy on computer ${instance.computerId} (${instance.partitionReference}); the node reported:\n${logTail(instance.errorLog)}`,
    );
  }
  if (instance.status === "pending") {
    return { waiting: "waiting for a partition: no free partition meets the request's SLA yet" };
  }
  if (instance.status !== "ready" || instance.reportedState !== state) {
    return {
      waiting: `deploying on computer ${instance.computerId}, partition ${instance.partitionReference} (asked ${state}, reported ${instance.reportedState ?? "nothing yet"})`,
    };
  }
  const missing = waitFor.filter((key) => !instance.connectionParameters[key]);
  if (missing.length > 0)
    return { waiting: `${state}; waiting for connection parameters ${missing.join(", ")}` };
  return { done: instance };
}

/** Requests the instance; then waits until it runs as asked (a failure keeps the request in the state). */
async function requestAndWait(
  client: MasterClient,
  inputs: SoftwareInstanceInputs,
  timeoutSeconds: number,
): Promise<Instance> {
  const subject = subjectOf(inputs);
  const state = inputs.state ?? "started";
  const requested = await client.requestInstance({
    title: inputs.title,
    softwareReleaseUrl: inputs.softwareRelease,
    softwareType: inputs.softwareType,
    parameters: inputs.parameters ?? {},
    sla: inputs.sla ?? {},
    shared: inputs.shared ?? false,
    sharingScope: inputs.sharingScope ?? "personal",
    state,
  });
  const waitFor = inputs.waitFor ?? [];
  try {
    return await waitUntil(
      subject,
      `it to be ${state}${waitFor.length ? ` with connection parameters ${waitFor.join(", ")}` : ""}`,
      timeoutSeconds,
      async () => pollInstance(subject, await client.getInstance(requested.id), state, waitFor),
    );
  } catch (error) {
    throw createdButNotReady(error, requested.id, outputsOf(inputs, await client.getInstance(requested.id)));
  }
}

/** The instance as the master has it; null once the master has forgotten it. */
async function fetchInstance(client: MasterClient, id: string): Promise<Instance | null> {
  try {
    return await client.getInstance(id);
  } catch (error) {
    if (error instanceof MasterApiError && error.status === 404) return null;
    throw error;
  }
}

/** Destroyed, or being destroyed, behind Pulumi's back: gone for the stack. */
const isGone = (instance: Instance | null): instance is null =>
  !instance || Boolean(instance.destroyedAt) || instance.requestedState === "destroyed";

export class SoftwareInstanceProvider
  implements pulumi.dynamic.ResourceProvider<SoftwareInstanceInputs, SoftwareInstanceOutputs>
{
  constructor(private readonly stack: StackSettings) {}

  async check(_olds: SoftwareInstanceInputs, news: SoftwareInstanceInputs) {
    const failures: Failure[] = [];
    if (news.title !== UNKNOWN && (typeof news.title !== "string" || news.title.trim() === "")) {
      failures.push({ property: "title", reason: "an instance needs a non-empty title" });
    }
    if (
      news.softwareRelease !== UNKNOWN &&
      (typeof news.softwareRelease !== "string" || !news.softwareRelease)
    ) {
      failures.push({ property: "softwareRelease", reason: "the software release URL is required" });
    }
    if (
      news.state !== undefined &&
      (news.state as string) !== UNKNOWN &&
      !["started", "stopped"].includes(news.state)
    ) {
      failures.push({
        property: "state",
        reason: `state must be "started" or "stopped", not ${JSON.stringify(news.state)}: deleting the resource destroys the instance`,
      });
    }
    failures.push(
      ...schemaFailures(InstanceRequest.pick({ sharingScope: true }), { sharingScope: news.sharingScope }),
    );
    const parameters = checkRecord("parameters", news.parameters, failures);
    const sla = checkRecord("sla", news.sla, failures);
    return { inputs: { ...news, parameters, sla }, failures };
  }

  async diff(_id: string, olds: SoftwareInstanceOutputs, news: SoftwareInstanceInputs) {
    // The title names the instance on the master; shared-ness and the SLA decide where it lives.
    const { replaces, unknown } = replacedKeys([
      ["title", olds.title, news.title],
      ["shared", olds.shared ?? false, news.shared ?? false],
      ["sla", olds.sla ?? {}, news.sla ?? {}],
    ]);
    const changes =
      replaces.length > 0 ||
      unknown ||
      anyChanged([
        [olds.softwareRelease, news.softwareRelease],
        [olds.softwareType ?? "", news.softwareType ?? ""],
        [olds.parameters ?? {}, news.parameters ?? {}],
        [olds.state ?? "started", news.state ?? "started"],
        [olds.sharingScope ?? "personal", news.sharingScope ?? "personal"],
        [olds.waitFor ?? [], news.waitFor ?? []],
        [olds.master, news.master],
      ]);
    // Same title: the old instance must be gone before the new one is requested.
    return { changes, replaces, deleteBeforeReplace: true };
  }

  async create(inputs: SoftwareInstanceInputs) {
    const timeout = inputs.__timeouts?.create ?? DEFAULT_TIMEOUT_SECONDS;
    const instance = await withMaster(inputs.master, this.stack, (client) =>
      requestAndWait(client, inputs, timeout),
    );
    return { id: instance.id, outs: outputsOf(inputs, instance) };
  }

  /** Release and type changes are re-requests, as in SlapOS: the instance keeps its partition. */
  async update(_id: string, _olds: SoftwareInstanceOutputs, news: SoftwareInstanceInputs) {
    const timeout = news.__timeouts?.update ?? DEFAULT_TIMEOUT_SECONDS;
    const instance = await withMaster(news.master, this.stack, (client) =>
      requestAndWait(client, news, timeout),
    );
    return { outs: outputsOf(news, instance) };
  }

  /** What the master says now: a destroyed instance leaves the state; a stopped one shows as a change. */
  async read(id: string, props?: SoftwareInstanceOutputs) {
    if (!props) throw new Error(IMPORT_UNSUPPORTED);
    const instance = await withMaster(props.master, this.stack, (client) => fetchInstance(client, id));
    if (isGone(instance)) return {};
    const observed: SoftwareInstanceInputs = {
      ...props,
      softwareRelease: instance.softwareReleaseUrl,
      softwareType:
        props.softwareType === undefined && instance.softwareType === "default"
          ? undefined
          : instance.softwareType,
      parameters: instance.parameters,
      sharingScope:
        props.sharingScope === undefined && instance.sharingScope === "personal"
          ? undefined
          : instance.sharingScope,
      state:
        instance.requestedState === "stopped" || instance.reportedState === "stopped" ? "stopped" : "started",
    };
    // The SDK types `inputs` as outputs; the engine stores them as the resource's inputs.
    return { id, props: outputsOf(observed, instance), inputs: observed as SoftwareInstanceOutputs };
  }

  async delete(id: string, props: SoftwareInstanceOutputs) {
    const subject = subjectOf(props);
    const timeout = props.__timeouts?.delete ?? DEFAULT_TIMEOUT_SECONDS;
    await withMaster(props.master, this.stack, async (client) => {
      const instance = await fetchInstance(client, id);
      if (!instance || instance.destroyedAt) return;
      await client.requestInstance({
        title: instance.title,
        softwareReleaseUrl: instance.softwareReleaseUrl,
        softwareType: instance.softwareType,
        shared: instance.shared,
        state: "destroyed",
      });
      await waitUntil(subject, "its partition to be destroyed and freed", timeout, async () => {
        const current = await fetchInstance(client, id);
        if (!current || current.destroyedAt) return { done: true };
        return {
          waiting: `destroying on computer ${current.computerId}, partition ${current.partitionReference}`,
        };
      });
    });
  }
}
