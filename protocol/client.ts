import { Agent, fetch } from "undici";
import type { z } from "zod";
import type * as api from "./api.js";

/** Where a master is and who we are to it (a person, a computer or an instance). */
export interface MasterConnection {
  /** The master's base URL, e.g. `https://10.0.0.1:8443/`. */
  url: string;
  /** The master's CA certificate (PEM): the server's certificate is checked against it. */
  ca?: string;
  /** Client certificate and key (PEM) issued by the master. */
  certificate?: string;
  key?: string;
}

function newDispatcher(connection: MasterConnection): Agent {
  return new Agent({
    connect: {
      ...(connection.ca ? { ca: connection.ca } : {}),
      ...(connection.certificate ? { cert: connection.certificate } : {}),
      ...(connection.key ? { key: connection.key } : {}),
    },
    // Long polls wait up to `wait` seconds for an answer.
    bodyTimeout: 0,
    headersTimeout: 0,
  });
}

/** A refusal from the master, with its status and the field it named. */
export class MasterApiError extends Error {
  constructor(
    readonly status: number,
    readonly kind: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "MasterApiError";
  }
}

type Body<Schema extends z.ZodType> = z.infer<Schema>;
type Input<Schema extends z.ZodType> = z.input<Schema>;

export type Instance = Body<typeof api.InstanceView>;
export type InstanceRequest = Input<typeof api.InstanceRequest>;
export type Computer = Body<typeof api.ComputerView>;
export type ComputerSettings = Input<typeof api.ComputerSettings>;
export type DesiredState = Body<typeof api.DesiredState>;
export type PartitionLayout = Input<typeof api.PartitionLayout>;
export type PartitionSettings = Input<typeof api.PartitionSettings>;
export type Partition = Body<typeof api.PartitionView>;
export type SoftwareInstallation = Body<typeof api.SoftwareView>;
export type Registration = Body<typeof api.Registration>;
export type Credentials = Body<typeof api.Credentials>;
export type UsageRecord = Input<typeof api.UsageRecord>;
export type Bill = Body<typeof api.Bill>;
export type PersonIdentity = Body<typeof api.PersonIdentity>;
export type Organisation = Body<typeof api.OrganisationView>;
export type OrganisationRole = Body<typeof api.OrganisationRole>;
export type RenewedCertificate = Body<typeof api.RenewedCertificate>;

/**
 * The master's JSON API, typed. Used by the CLI, the node agent, the Pulumi provider and
 * TypeScript infra programs.
 */
export class MasterClient {
  private readonly base: string;
  private current: MasterConnection;
  private dispatcher: Agent;

  constructor(
    connection: MasterConnection,
    private readonly options: { timeoutMs?: number } = {},
  ) {
    this.current = connection;
    this.base = new URL(
      "api/v1/",
      connection.url.endsWith("/") ? connection.url : `${connection.url}/`,
    ).toString();
    this.dispatcher = newDispatcher(connection);
  }

  /** Where the master is and the certificate this client presents now. */
  get connection(): MasterConnection {
    return this.current;
  }

  /**
   * Presents another certificate from now on (a renewed one). Calls already under way, such as
   * a long poll, finish on the connections they started with.
   */
  useCredentials(certificate: string, key: string): void {
    const previous = this.dispatcher;
    this.current = { ...this.current, certificate, key };
    this.dispatcher = newDispatcher(this.current);
    // close() lets requests already sent complete before it closes their connections.
    previous.close().catch(() => {});
  }

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.options.timeoutMs ?? 60_000,
    signal?: AbortSignal,
  ): Promise<T> {
    const url = new URL(path, this.base);
    let response: Awaited<ReturnType<typeof fetch>>;
    try {
      response = await fetch(url, {
        method,
        dispatcher: this.dispatcher,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: signal
          ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
          : AbortSignal.timeout(timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: Error }).cause;
      throw new Error(
        `cannot reach the master at ${this.connection.url}: ${cause?.message ?? (error as Error).message}`,
      );
    }
    const text = await response.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      throw new MasterApiError(
        response.status,
        "invalid",
        `the master answered ${response.status} with non-JSON: ${text.slice(0, 200)}`,
      );
    }
    if (!response.ok) {
      const error = (parsed as { error?: { kind?: string; message?: string; field?: string } })?.error;
      throw new MasterApiError(
        response.status,
        error?.kind ?? "unknown",
        `${method} ${url.pathname}: ${error?.message ?? `HTTP ${response.status}`}`,
        error?.field,
      );
    }
    return parsed as T;
  }

  // persons
  createPerson(person: Input<typeof api.PersonRequest>) {
    return this.call<PersonIdentity>("POST", "persons", person);
  }
  createRegistrationToken(options: Input<typeof api.TokenRequest> = {}) {
    return this.call<Body<typeof api.Token>>("POST", "registration-tokens", options);
  }
  /**
   * Revokes a person (admins only, not oneself): their certificates and unused registration
   * tokens stop working; their computers and instances stay, for an admin to act on.
   */
  revokePerson(personId: string) {
    return this.call<{ ok: true }>("DELETE", `persons/${encodeURIComponent(personId)}`);
  }
  bill(personId: string, from: Date, to: Date) {
    const query = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
    return this.call<Bill>("GET", `persons/${encodeURIComponent(personId)}/bill?${query}`);
  }

  // certificates
  /**
   * A new certificate and key for the person or computer this client presents. The current
   * certificate keeps working until it expires; call `useCredentials` to switch to the new one.
   */
  renewCertificate() {
    return this.call<RenewedCertificate>("POST", "certificates/renew");
  }

  // organisations
  /** Creates an organisation; the caller becomes its first manager. */
  createOrganisation(organisation: Input<typeof api.OrganisationRequest>) {
    return this.call<Organisation>("POST", "organisations", organisation);
  }
  /** The organisations the caller belongs to, with their members. */
  listOrganisations() {
    return this.call<Organisation[]>("GET", "organisations");
  }
  getOrganisation(organisationId: string) {
    return this.call<Organisation>("GET", `organisations/${encodeURIComponent(organisationId)}`);
  }
  /** Adds a person to an organisation or changes their role (its managers and admins). */
  setOrganisationMember(
    organisationId: string,
    personId: string,
    settings: Input<typeof api.OrganisationMemberSettings>,
  ) {
    return this.call<Organisation>(
      "PUT",
      `organisations/${encodeURIComponent(organisationId)}/members/${encodeURIComponent(personId)}`,
      settings,
    );
  }
  /** Removes a member (its managers and admins), or leaves (one's own person id). */
  removeOrganisationMember(organisationId: string, personId: string) {
    return this.call<{ ok: true }>(
      "DELETE",
      `organisations/${encodeURIComponent(organisationId)}/members/${encodeURIComponent(personId)}`,
    );
  }

  // computers
  listComputers() {
    return this.call<Computer[]>("GET", "computers");
  }
  getComputer(computerId: string) {
    return this.call<Computer>("GET", `computers/${encodeURIComponent(computerId)}`);
  }
  /** Retires a computer (refused while it hosts instances); its certificates are revoked. */
  deregisterComputer(computerId: string) {
    return this.call<{ ok: true }>("DELETE", `computers/${encodeURIComponent(computerId)}`);
  }
  updateComputer(computerId: string, settings: ComputerSettings) {
    return this.call<Computer>("PATCH", `computers/${encodeURIComponent(computerId)}`, settings);
  }
  /**
   * Sets (a value) or clears (null) a partition's routable IPv4 and block device; absent keeps
   * it. The computer's node applies them before deploying the partition's instance.
   */
  configurePartition(computerId: string, reference: string, settings: PartitionSettings) {
    return this.call<Partition>(
      "PUT",
      `computers/${encodeURIComponent(computerId)}/partitions/${encodeURIComponent(reference)}`,
      settings,
    );
  }
  supply(computerId: string, url: string, state: "available" | "destroyed" = "available") {
    return this.call<SoftwareInstallation>("PUT", `computers/${encodeURIComponent(computerId)}/software`, {
      url,
      state,
    });
  }

  // instances
  requestInstance(request: InstanceRequest) {
    return this.call<Instance>("POST", "instances", request);
  }
  listInstances() {
    return this.call<Instance[]>("GET", "instances");
  }
  getInstance(instanceId: string) {
    return this.call<Instance>("GET", `instances/${encodeURIComponent(instanceId)}`);
  }
  publishConnectionParameters(instanceId: string, parameters: Record<string, string>) {
    return this.call<Instance>("PUT", `instances/${encodeURIComponent(instanceId)}/connection-parameters`, {
      parameters,
    });
  }
  bang(instanceId: string) {
    return this.call<{ ok: true }>("POST", `instances/${encodeURIComponent(instanceId)}/bang`);
  }

  // nodes
  register(token: string, title?: string) {
    return this.call<Registration>("POST", "register", { token, ...(title ? { title } : {}) });
  }
  uploadPartitions(computerId: string, partitions: PartitionLayout[]) {
    return this.call<Computer>("PUT", `computers/${encodeURIComponent(computerId)}/partitions`, {
      partitions,
    });
  }
  /** Answers at once if the version exceeds `after`, else within `waitSeconds`. */
  desiredState(
    computerId: string,
    options: { after?: number; waitSeconds?: number; signal?: AbortSignal } = {},
  ) {
    const query = new URLSearchParams({
      after: String(options.after ?? 0),
      wait: String(options.waitSeconds ?? 0),
    });
    const timeout = ((options.waitSeconds ?? 0) + 60) * 1000;
    return this.call<DesiredState>(
      "GET",
      `computers/${encodeURIComponent(computerId)}/desired-state?${query}`,
      undefined,
      timeout,
      options.signal,
    );
  }
  reportSoftware(computerId: string, report: Input<typeof api.SoftwareReport>) {
    return this.call<SoftwareInstallation>(
      "PUT",
      `computers/${encodeURIComponent(computerId)}/software-state`,
      report,
    );
  }
  reportInstance(instanceId: string, report: Input<typeof api.InstanceStateReport>) {
    return this.call<Instance>("PUT", `instances/${encodeURIComponent(instanceId)}/reported-state`, report);
  }
  reportDestroyed(instanceId: string) {
    return this.call<Instance>("POST", `instances/${encodeURIComponent(instanceId)}/destroyed`);
  }
  instanceCredentials(instanceId: string) {
    return this.call<Credentials>("GET", `instances/${encodeURIComponent(instanceId)}/credentials`);
  }
  reportUsage(computerId: string, records: UsageRecord[]) {
    return this.call<{ stored: number }>("POST", `computers/${encodeURIComponent(computerId)}/usage`, {
      records,
    });
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
