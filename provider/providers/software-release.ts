import type * as pulumi from "@pulumi/pulumi";
import type { MasterClient, SoftwareInstallation } from "../../protocol/client.js";
import type { Timeouts } from "../dynamic.js";
import type { MasterSettings } from "../master.js";
import {
  anyChanged,
  createdButNotReady,
  type Failure,
  IMPORT_UNSUPPORTED,
  replacedKeys,
  UNKNOWN,
} from "./check.js";
import { type StackSettings, withMaster } from "./connection.js";
import { logTail, type Poll, waitUntil } from "./wait.js";

export interface SoftwareReleaseInputs {
  url: string;
  computerId: string;
  master?: MasterSettings;
  __timeouts?: Timeouts;
}

export interface SoftwareReleaseOutputs extends SoftwareReleaseInputs {
  /** building, available or error, as the node reported it. */
  state: string;
}

const DEFAULT_TIMEOUT_SECONDS = 1800;

const idOf = (inputs: SoftwareReleaseInputs) => `${inputs.computerId}/${inputs.url}`;
const subjectOf = (inputs: SoftwareReleaseInputs) =>
  `software release ${inputs.url} on computer ${inputs.computerId}`;

async function installation(
  client: MasterClient,
  computerId: string,
  url: string,
): Promise<SoftwareInstallation | undefined> {
  return (await client.getComputer(computerId)).software.find((software) => software.url === url);
}

/** One look at the installation: a failed build fails with the end of its log. */
function pollInstallation(
  subject: string,
  software: SoftwareInstallation | undefined,
): Poll<SoftwareInstallation> {
  if (software?.reportedState === "error") {
    throw new Error(`${subject} failed to build; the end of its build log:\n${logTail(software.errorLog)}`);
  }
  if (software?.reportedState === "available") return { done: software };
  return {
    waiting: software?.reportedState === "building" ? "building" : "waiting for the node to start the build",
  };
}

/** Supplies the release and waits for the node to report it installed. */
async function supplyAndWait(client: MasterClient, inputs: SoftwareReleaseInputs, timeoutSeconds: number) {
  const subject = subjectOf(inputs);
  await client.supply(inputs.computerId, inputs.url, "available");
  try {
    return await waitUntil(subject, "the node to report it installed", timeoutSeconds, async () =>
      pollInstallation(subject, await installation(client, inputs.computerId, inputs.url)),
    );
  } catch (error) {
    // Supplied but not installed: the state keeps it, so that a delete removes it.
    throw createdButNotReady(error, idOf(inputs), { ...inputs, state: "error" });
  }
}

export class SoftwareReleaseProvider
  implements pulumi.dynamic.ResourceProvider<SoftwareReleaseInputs, SoftwareReleaseOutputs>
{
  constructor(private readonly stack: StackSettings) {}

  async check(_olds: SoftwareReleaseInputs, news: SoftwareReleaseInputs) {
    const failures: Failure[] = [];
    if (
      news.url !== UNKNOWN &&
      (typeof news.url !== "string" || news.url.trim() === "" || news.url.length > 2048)
    ) {
      failures.push({
        property: "url",
        reason: "the software release URL is required (at most 2048 characters)",
      });
    }
    if (news.computerId !== UNKNOWN && (typeof news.computerId !== "string" || news.computerId === "")) {
      failures.push({ property: "computerId", reason: "the computer to install on is required" });
    }
    return { inputs: news, failures };
  }

  async diff(_id: string, olds: SoftwareReleaseOutputs, news: SoftwareReleaseInputs) {
    const { replaces, unknown } = replacedKeys([
      ["url", olds.url, news.url],
      ["computerId", olds.computerId, news.computerId],
    ]);
    const changes = replaces.length > 0 || unknown || anyChanged([[olds.master, news.master]]);
    return { changes, replaces };
  }

  async create(inputs: SoftwareReleaseInputs) {
    const timeout = inputs.__timeouts?.create ?? DEFAULT_TIMEOUT_SECONDS;
    const software = await withMaster(inputs.master, this.stack, (client) =>
      supplyAndWait(client, inputs, timeout),
    );
    return {
      id: idOf(inputs),
      outs: { ...inputs, state: software.reportedState ?? "" },
    };
  }

  async update(_id: string, _olds: SoftwareReleaseOutputs, news: SoftwareReleaseInputs) {
    const timeout = news.__timeouts?.update ?? DEFAULT_TIMEOUT_SECONDS;
    const software = await withMaster(news.master, this.stack, (client) =>
      supplyAndWait(client, news, timeout),
    );
    return { outs: { ...news, state: software.reportedState ?? "" } };
  }

  /** Removed, or asked removed, behind Pulumi's back: gone from the stack. A failed build shows as state "error". */
  async read(id: string, props?: SoftwareReleaseOutputs) {
    if (!props) throw new Error(IMPORT_UNSUPPORTED);
    const software = await withMaster(props.master, this.stack, (client) =>
      installation(client, props.computerId, props.url),
    );
    if (!software || software.requestedState === "destroyed") return {};
    return { id, props: { ...props, state: software.reportedState ?? "" } };
  }

  /** Refused while instances use the release on that computer; otherwise removed and waited for. */
  async delete(_id: string, props: SoftwareReleaseOutputs) {
    const subject = subjectOf(props);
    const timeout = props.__timeouts?.delete ?? DEFAULT_TIMEOUT_SECONDS;
    await withMaster(props.master, this.stack, async (client) => {
      const users = (await client.listInstances()).filter(
        (instance) =>
          instance.computerId === props.computerId &&
          instance.softwareReleaseUrl === props.url &&
          !instance.destroyedAt,
      );
      if (users.length > 0) {
        throw new Error(
          `${subject} is still used by instance(s) ${users.map((instance) => `'${instance.title}'`).join(", ")}: destroy them (or move them to another release) first`,
        );
      }
      if (!(await installation(client, props.computerId, props.url))) return;
      await client.supply(props.computerId, props.url, "destroyed");
      await waitUntil(subject, "the node to remove it", timeout, async () => {
        const software = await installation(client, props.computerId, props.url);
        if (!software || software.reportedState === "destroyed") return { done: true };
        return { waiting: `removing (reported ${software.reportedState ?? "nothing yet"})` };
      });
    });
  }
}
