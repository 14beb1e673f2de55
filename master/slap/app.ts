import type { Context } from "hono";
import { Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import { PartitionLayout } from "../../protocol/api.js";
import { MarshalError, type Marshallable, marshal } from "../../protocol/xml-marshaller.js";
import type { MasterEnv } from "../api/context.js";
import { actorOf, requireActor } from "../api/identity.js";
import { loggableError } from "../api/log-error.js";
import { bangComputer, ensureComputer, touchComputer, uploadPartitions } from "../model/computers.js";
import type { DesiredState } from "../model/desired-state.js";
import { forbidden, invalid, ModelError, notFound } from "../model/errors.js";
import { getInstanceCredentials } from "../model/instance-certificates.js";
import {
  authorizeInstance,
  bangInstance,
  completeDestruction,
  instanceInPartition,
  reportInstanceState,
  requestInstance,
  setConnectionParameters,
} from "../model/instances.js";
import { reportSoftwareState, supplySoftware } from "../model/software.js";
import {
  asDict,
  type Fields,
  form,
  marshalledField,
  query,
  REFERENCE_LENGTH,
  required,
  stringDict,
} from "./form.js";
import { computer, computerPartition, softwareInstance } from "./objects.js";

// The classic SLAP API (reference section 3) at the master's root: the same model as the JSON
// API, spoken in form fields and xml_marshaller XML, for unmodified slapos.core nodes, clients
// and buildout recipes.

type SlapContext = Context<MasterEnv>;

function xml(c: SlapContext, value: Marshallable) {
  return c.body(marshal(value), 200, { "content-type": "text/xml; charset=utf-8" });
}

function text(c: SlapContext, body: string, status: ContentfulStatusCode = 200) {
  return c.body(body, status, { "content-type": "text/plain; charset=utf-8" });
}

/**
 * The caller decides nothing here: every handler resolves what the call names (a computer, a
 * partition's instance) and asks the model, with the caller's own identity, the same question
 * the JSON API asks. slapos.core's `Authorization: X-SlapPartition ...` header carries no proof
 * and is never read.
 */

/** The computer's desired state as the caller may see it (an instance: its own partition only). */
async function desiredStateFor(c: SlapContext, computerId: string): Promise<DesiredState> {
  return JSON.parse((await c.get("services").desiredStates.read(actorOf(c), computerId)).json);
}

/** The instance in the partition a partition-side call names (undefined: the partition is free). */
async function namedInstance(c: SlapContext, fields: Fields): Promise<string | undefined> {
  return instanceInPartition(
    c.get("services").db,
    actorOf(c),
    required(fields, "computer_id"),
    required(fields, "computer_partition_id"),
  );
}

/** As namedInstance, for calls that need an instance there. */
async function requiredInstance(c: SlapContext, fields: Fields): Promise<string> {
  const instanceId = await namedInstance(c, fields);
  if (!instanceId) {
    throw notFound(
      `partition ${fields("computer_partition_id")} of ${fields("computer_id")} runs no instance`,
    );
  }
  return instanceId;
}

const STATUS: Record<string, ContentfulStatusCode> = {
  invalid: 400,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  not_ready: 408,
};

export function createSlapApp() {
  const slap = new Hono<MasterEnv>();
  slap.onError((error, c) => {
    if (error instanceof ModelError) return text(c, error.message, STATUS[error.kind] ?? 400);
    if (error instanceof MarshalError) return text(c, error.message, 400);
    c.get("services")?.logger.error({ error: loggableError(error), path: c.req.path }, "SLAP request failed");
    return text(c, "internal error; see the master's log", 500);
  });
  slap.get("/getHateoasUrl", (c) => text(c, "no HATEOAS API: use the JSON API under /api/v1/", 404));
  slap.use(requireActor);

  // Nodes read their whole computer on every pass (~2 KB of XML per partition): the marshalled
  // answer is kept per computer and desired-state version, like the JSON document it comes from.
  const computerXml = new Map<string, { version: number; xml: string }>();
  const fullComputerInformation = async (c: SlapContext) => {
    const computerId = required(query(c), "computer_id");
    if (actorOf(c).kind === "instance") return xml(c, computer(await desiredStateFor(c, computerId)));
    const document = await c.get("services").desiredStates.read(actorOf(c), computerId);
    let cached = computerXml.get(computerId);
    if (cached?.version !== document.version) {
      cached = { version: document.version, xml: marshal(computer(JSON.parse(document.json))) };
      computerXml.delete(computerId);
      computerXml.set(computerId, cached);
      if (computerXml.size > 10_000) computerXml.delete(computerXml.keys().next().value as string);
    }
    return c.body(cached.xml, 200, { "content-type": "text/xml; charset=utf-8" });
  };
  slap.get("/getFullComputerInformation", fullComputerInformation);
  slap.get("/getComputerInformation", fullComputerInformation);

  slap.get("/registerComputerPartition", async (c) => {
    const fields = query(c);
    const computerId = required(fields, "computer_reference");
    const reference = required(fields, "computer_partition_reference");
    const state = await desiredStateFor(c, computerId);
    const partition = state.partitions.find((candidate) => candidate.reference === reference);
    if (!partition) {
      if (actorOf(c).kind === "instance")
        throw forbidden(`instance ${actorOf(c).id} may not read partition ${reference} of ${computerId}`);
      throw notFound(`computer ${computerId} has no partition ${reference}`);
    }
    return xml(c, computerPartition(computerId, partition));
  });

  slap.get("/getComputerPartitionCertificate", async (c) => {
    const services = c.get("services");
    // Without TLS (insecure mode) nobody uses certificates, as with slapproxy.
    if (services.insecureAdminId) return xml(c, { certificate: "", key: "" });
    const instanceId = await requiredInstance(c, query(c));
    const credentials = await getInstanceCredentials(services.db, services.authority, actorOf(c), instanceId);
    return xml(c, { certificate: credentials.certificate, key: credentials.privateKey });
  });

  slap.post("/loadComputerConfigurationFromXML", async (c) => {
    const fields = await form(c);
    required(fields, "xml");
    const description = asDict(marshalledField(fields, "xml") ?? null, "xml");
    const computerId = description.reference;
    if (typeof computerId !== "string" || !computerId)
      throw invalid("xml", "the computer dictionary has no reference");
    if (computerId.length > REFERENCE_LENGTH) {
      throw invalid(
        "xml.reference",
        `the computer reference in the field 'xml' is ${computerId.length} characters long; at most ${REFERENCE_LENGTH} are accepted`,
      );
    }
    const actor = actorOf(c);
    const { db } = c.get("services");
    await ensureComputer(db, actor, computerId);
    const partitionList = Array.isArray(description.partition_list) ? description.partition_list : [];
    const layout = partitionList.map((entry) => {
      const partition = asDict(entry, "xml.partition_list");
      const reference = String(partition.reference ?? "");
      const tap = partition.tap ? asDict(partition.tap, "xml.partition_list.tap").name : undefined;
      const tapName = typeof tap === "string" && tap ? tap : null;
      const addresses = Array.isArray(partition.address_list) ? partition.address_list : [];
      return {
        reference,
        tap: tapName,
        addresses: addresses.map((address) => {
          const fields = asDict(address, "xml.partition_list.address_list");
          return {
            interface: tapName ?? reference,
            address: String(fields.addr ?? ""),
            netmask: String(fields.netmask ?? ""),
          };
        }),
      };
    });
    const checked = z.array(PartitionLayout).safeParse(layout);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw invalid(`xml.partition_list.${issue?.path.join(".")}`, issue?.message ?? "invalid partition");
    }
    await uploadPartitions(db, actor, computerId, checked.data);
    return text(c, "done");
  });

  slap.post("/supplySupply", async (c) => {
    const fields = await form(c);
    const url = required(fields, "url");
    const state = fields("state") ?? "available";
    if (state !== "available" && state !== "destroyed")
      throw invalid("state", "state must be available or destroyed");
    await supplySoftware(c.get("services").db, actorOf(c), required(fields, "computer_id"), url, state);
    return text(c, `Supplied '${url}' to be ${state}`);
  });

  slap.post("/requestComputerPartition", async (c) => {
    const fields = await form(c);
    // Named partition: a child inside the tree of the instance living there (the model decides
    // whether the caller may request on its behalf).
    const parentId =
      fields("computer_id") && fields("computer_partition_id")
        ? await requiredInstance(c, fields)
        : undefined;
    const stateValue = marshalledField(fields, "state") ?? null;
    if (
      stateValue !== null &&
      stateValue !== "started" &&
      stateValue !== "stopped" &&
      stateValue !== "destroyed"
    ) {
      throw invalid("state", "state must be started, stopped or destroyed");
    }
    const shared = marshalledField(fields, "shared_xml") === true;
    const view = await requestInstance(
      c.get("services").db,
      actorOf(c),
      {
        title: required(fields, "partition_reference"),
        softwareReleaseUrl: required(fields, "software_release"),
        softwareType: fields("software_type") || "default",
        parameters: stringDict("partition_parameter_xml", fields("partition_parameter_xml")),
        sla: stringDict("filter_xml", fields("filter_xml")),
        shared,
        ...(stateValue ? { state: stateValue } : {}),
      },
      { parentId },
    );
    if (view.status === "pending") {
      return text(c, `Instance '${view.title}' requested; the master is placing it: ask again later`, 408);
    }
    return xml(c, softwareInstance(view));
  });

  slap.post("/setComputerPartitionConnectionXml", async (c) => {
    const fields = await form(c);
    const instanceId = await requiredInstance(c, fields);
    const parameters = stringDict("connection_xml", fields("connection_xml"));
    await setConnectionParameters(
      c.get("services").db,
      actorOf(c),
      fields("slave_reference") ?? instanceId,
      parameters,
    );
    return text(c, "done");
  });

  const softwareReport =
    (state: "building" | "available" | "error" | "destroyed", answer: string) => async (c: SlapContext) => {
      const fields = await form(c);
      await reportSoftwareState(
        c.get("services").db,
        actorOf(c),
        required(fields, "computer_id"),
        required(fields, "url"),
        state,
        fields("error_log"),
      );
      return text(c, answer);
    };
  slap.post("/buildingSoftwareRelease", softwareReport("building", "Ignored"));
  slap.post("/availableSoftwareRelease", softwareReport("available", "Ignored"));
  slap.post("/softwareReleaseError", softwareReport("error", "Ignored"));
  slap.post("/destroyedSoftwareRelease", softwareReport("destroyed", "OK"));

  // SLAP reports carry no timestamp: they are taken to be about the instance's current version.
  const instanceReport = (state: "started" | "stopped") => async (c: SlapContext) => {
    const instanceId = await namedInstance(c, await form(c));
    if (instanceId) await reportInstanceState(c.get("services").db, actorOf(c), instanceId, state);
    return text(c, "Ignored");
  };
  slap.post("/startedComputerPartition", instanceReport("started"));
  slap.post("/stoppedComputerPartition", instanceReport("stopped"));

  slap.post("/softwareInstanceError", async (c) => {
    const fields = await form(c);
    const instanceId = fields("slave_reference") ?? (await namedInstance(c, fields));
    if (instanceId) {
      await reportInstanceState(c.get("services").db, actorOf(c), instanceId, "error", {
        errorLog: fields("error_log") ?? "",
      });
    }
    return text(c, "Ignored");
  });

  slap.post("/destroyedComputerPartition", async (c) => {
    const instanceId = await namedInstance(c, await form(c));
    if (!instanceId) return text(c, "OK");
    try {
      await completeDestruction(c.get("services").db, actorOf(c), instanceId);
    } catch (error) {
      // As in SlapOS: a parent waits for its children; the node reports again next pass.
      if (error instanceof ModelError && error.kind === "conflict")
        return text(c, `Not destroying yet: ${error.message}`);
      throw error;
    }
    return text(c, "OK");
  });

  slap.post("/softwareInstanceBang", async (c) => {
    const instanceId = await requiredInstance(c, await form(c));
    await bangInstance(c.get("services").db, actorOf(c), instanceId);
    return text(c, "OK");
  });

  slap.post("/computerBang", async (c) => {
    await bangComputer(c.get("services").db, actorOf(c), required(await form(c), "computer_id"));
    return xml(c, "");
  });
  // Usage travels through the JSON API (`/api/v1/computers/{id}/usage`); the classic journal
  // upload is accepted from the computer itself and ignored, as slapproxy does.
  slap.post("/useComputer", async (c) => {
    await touchComputer(c.get("services").db, actorOf(c), required(await form(c), "computer_id"));
    return text(c, "Ignored");
  });
  // Related instances are the master's to know (the tree): the call is checked and ignored.
  slap.post("/updateComputerPartitionRelatedInstanceList", async (c) => {
    const instanceId = await requiredInstance(c, await form(c));
    await authorizeInstance(c.get("services").db, actorOf(c), instanceId, "publish");
    return text(c, "done");
  });
  return slap;
}
