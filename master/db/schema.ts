import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

// The master's whole state. Everything else (nodes, instances' files) can be rebuilt from it.

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();

/** Capabilities a computer advertises and an SLA can ask for. */
export interface Capabilities {
  cpu_architecture?: string;
  cpu_cores?: number;
  memory_mb?: number;
  disk_gb?: number;
}

export interface PartitionAddress {
  /** The network interface the address lives on (e.g. `eth0`, `slaptap3`). */
  interface: string;
  address: string;
  netmask: string;
}

/** Per-partition extras the master sets (the Partition resource); a node's upload never changes them. */
export interface PartitionExtras {
  routableIpv4?: string;
  blockDevice?: string;
}

/**
 * Who may place instances on a computer (its owner's consent, as SlapOS's allocation scope), and
 * who may attach shared instances to an instance: its owner only, the members of the owner's
 * organisations, or anyone.
 */
export const SCOPES = ["personal", "organisation", "open"] as const;
export type Scope = (typeof SCOPES)[number];

export const organisations = pgTable("organisations", {
  id: text("id").primaryKey(),
  title: text("title").notNull(),
  createdAt: createdAt(),
});

export const persons = pgTable("persons", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  email: text("email"),
  isAdmin: boolean("is_admin").notNull().default(false),
  /** Set when an admin revoked the person: their certificates are revoked and none is issued again. */
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  createdAt: createdAt(),
});

/** A person belongs to any number of organisations; its managers add and remove members. */
export const organisationMembers = pgTable(
  "organisation_members",
  {
    organisationId: text("organisation_id")
      .notNull()
      .references(() => organisations.id),
    personId: text("person_id")
      .notNull()
      .references(() => persons.id),
    role: text("role", { enum: ["manager", "member"] }).notNull(),
    createdAt: createdAt(),
  },
  (table) => [
    primaryKey({ columns: [table.organisationId, table.personId] }),
    index("organisation_members_person_idx").on(table.personId),
  ],
);

export const computers = pgTable(
  "computers",
  {
    id: text("id").primaryKey(),
    title: text("title").notNull(),
    ownerId: text("owner_id")
      .notNull()
      .references(() => persons.id),
    region: text("region"),
    capabilities: jsonb("capabilities").$type<Capabilities>().notNull().default({}),
    pricePerPartitionHour: doublePrecision("price_per_partition_hour").notNull().default(0),
    /** Whose requests may be placed here (and supply their releases here). */
    allocationScope: text("allocation_scope", { enum: SCOPES }).notNull().default("personal"),
    /**
     * How many of its partitions are free, kept in the same transactions that take and free them:
     * allocation finds computers with room through an index instead of scanning partitions.
     */
    freePartitions: integer("free_partitions").notNull().default(0),
    /** Bumped in the same transaction as any change a node must act on; nodes long-poll it. */
    desiredVersion: bigint("desired_version", { mode: "number" }).notNull().default(1),
    lastContactAt: timestamp("last_contact_at", { withTimezone: true }),
    deregisteredAt: timestamp("deregistered_at", { withTimezone: true }),
    createdAt: createdAt(),
  },
  (table) => [
    index("computers_owner_idx").on(table.ownerId),
    // Allocation walks the computers with room, cheapest first.
    index("computers_available_idx")
      .on(table.pricePerPartitionHour, table.id)
      .where(sql`${table.freePartitions} > 0 and ${table.deregisteredAt} is null`),
  ],
);

export const partitions = pgTable(
  "partitions",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    computerId: text("computer_id")
      .notNull()
      .references(() => computers.id),
    /** `slappartN` */
    reference: text("reference").notNull(),
    addresses: jsonb("addresses").$type<PartitionAddress[]>().notNull().default([]),
    tap: text("tap"),
    extras: jsonb("extras").$type<PartitionExtras>().notNull().default({}),
    state: text("state", { enum: ["free", "busy"] })
      .notNull()
      .default("free"),
    /** The instance living here; unique, so a partition is never given twice. */
    instanceId: text("instance_id"),
  },
  (table) => [
    uniqueIndex("partitions_computer_reference_idx").on(table.computerId, table.reference),
    uniqueIndex("partitions_instance_idx").on(table.instanceId),
    // A routable address serves one partition of one computer: two would answer for it at once.
    uniqueIndex("partitions_routable_ipv4_idx").on(sql`(${table.extras} ->> 'routableIpv4')`),
    index("partitions_free_idx").on(table.computerId).where(sql`${table.state} = 'free'`),
  ],
);

export const softwareInstallations = pgTable(
  "software_installations",
  {
    computerId: text("computer_id")
      .notNull()
      .references(() => computers.id),
    url: text("url").notNull(),
    requestedState: text("requested_state", { enum: ["available", "destroyed"] }).notNull(),
    reportedState: text("reported_state", { enum: ["building", "available", "error", "destroyed"] }),
    /** Tail of the build log when the last build failed. */
    errorLog: text("error_log"),
    requestedAt: timestamp("requested_at", { withTimezone: true }).notNull().defaultNow(),
    reportedAt: timestamp("reported_at", { withTimezone: true }),
  },
  (table) => [
    primaryKey({ columns: [table.computerId, table.url] }),
    index("software_installations_url_idx").on(table.url, table.requestedState),
  ],
);

export const softwareInstances = pgTable(
  "software_instances",
  {
    id: text("id").primaryKey(),
    title: text("title").notNull(),
    /**
     * Titles are unique per scope: `person:<id>` for the roots a person requests,
     * `tree:<root id>` for the instances requested inside a tree.
     */
    scope: text("scope").notNull(),
    softwareReleaseUrl: text("software_release_url").notNull(),
    softwareType: text("software_type").notNull().default("default"),
    parameters: jsonb("parameters").$type<Record<string, string>>().notNull().default({}),
    sla: jsonb("sla").$type<Record<string, string>>().notNull().default({}),
    shared: boolean("shared").notNull().default(false),
    requestedState: text("requested_state", { enum: ["started", "stopped", "destroyed"] }).notNull(),
    reportedState: text("reported_state", { enum: ["started", "stopped", "destroyed", "error"] }),
    reportedAt: timestamp("reported_at", { withTimezone: true }),
    errorLog: text("error_log"),
    connectionParameters: jsonb("connection_parameters")
      .$type<Record<string, string>>()
      .notNull()
      .default({}),
    /** The person who owns the whole tree (the requester of its root). */
    ownerId: text("owner_id")
      .notNull()
      .references(() => persons.id),
    /** The instance that requested this one; null for a root. */
    parentId: text("parent_id"),
    /** The root of this instance's tree (itself for a root). */
    rootId: text("root_id").notNull(),
    /** The partition it runs in; null while unallocated, for shared instances, and once freed. */
    partitionId: integer("partition_id"),
    /** For a shared instance: the instance whose partition serves it. */
    hostInstanceId: text("host_instance_id"),
    /** Whose shared instances this instance agrees to serve (its owner's only, by default). */
    sharingScope: text("sharing_scope", { enum: SCOPES }).notNull().default("personal"),
    /** SLAP timestamp (ms): changes exactly when the node must redeploy the instance. */
    timestamp: bigint("timestamp", { mode: "number" }).notNull(),
    /**
     * The timestamp of the version the last report was about (its publish, for a shared
     * instance): a report says nothing about a version requested after it.
     */
    reportedTimestamp: bigint("reported_timestamp", { mode: "number" }),
    createdAt: createdAt(),
    /** Set once destruction is complete (partition freed, certificate revoked). */
    destroyedAt: timestamp("destroyed_at", { withTimezone: true }),
  },
  (table) => [
    uniqueIndex("software_instances_scope_title_idx").on(table.scope, table.title),
    index("software_instances_root_idx").on(table.rootId),
    index("software_instances_owner_idx").on(table.ownerId),
    index("software_instances_host_idx").on(table.hostInstanceId),
    // Requests waiting for a partition, oldest first: placed as soon as capacity appears.
    index("software_instances_waiting_idx")
      .on(table.createdAt)
      .where(
        sql`${table.partitionId} is null and ${table.shared} = false and ${table.destroyedAt} is null and ${table.requestedState} <> 'destroyed'`,
      ),
  ],
);

/** A trading contract: recorded for every allocation, as the seed architecture describes. */
export const contracts = pgTable(
  "contracts",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    instanceId: text("instance_id").notNull(),
    requesterId: text("requester_id")
      .notNull()
      .references(() => persons.id),
    /** The owner of the computer: who provides the partition. */
    providerId: text("provider_id")
      .notNull()
      .references(() => persons.id),
    computerId: text("computer_id")
      .notNull()
      .references(() => computers.id),
    partitionReference: text("partition_reference").notNull(),
    /** The SLA conditions that were asked. */
    conditions: jsonb("conditions").$type<Record<string, string>>().notNull(),
    pricePerHour: doublePrecision("price_per_hour").notNull(),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull().defaultNow(),
    endedAt: timestamp("ended_at", { withTimezone: true }),
  },
  (table) => [
    index("contracts_requester_idx").on(table.requesterId),
    index("contracts_instance_idx").on(table.instanceId),
  ],
);

export const usageRecords = pgTable(
  "usage_records",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    computerId: text("computer_id")
      .notNull()
      .references(() => computers.id),
    partitionReference: text("partition_reference").notNull(),
    instanceId: text("instance_id"),
    periodStart: timestamp("period_start", { withTimezone: true }).notNull(),
    periodEnd: timestamp("period_end", { withTimezone: true }).notNull(),
    cpuSeconds: doublePrecision("cpu_seconds").notNull().default(0),
    memoryBytes: bigint("memory_bytes", { mode: "number" }).notNull().default(0),
    diskBytes: bigint("disk_bytes", { mode: "number" }).notNull().default(0),
    networkRxBytes: bigint("network_rx_bytes", { mode: "number" }).notNull().default(0),
    networkTxBytes: bigint("network_tx_bytes", { mode: "number" }).notNull().default(0),
    createdAt: createdAt(),
  },
  (table) => [index("usage_records_instance_idx").on(table.instanceId, table.periodStart)],
);

/** The master's certificate authority: in the database, so every master process shares it. */
export const authority = pgTable("authority", {
  id: integer("id").primaryKey(),
  certificatePem: text("certificate_pem").notNull(),
  privateKeyPem: text("private_key_pem").notNull(),
  createdAt: createdAt(),
});

export const certificates = pgTable(
  "certificates",
  {
    serial: text("serial").primaryKey(),
    kind: text("kind", { enum: ["person", "computer", "instance"] }).notNull(),
    subjectId: text("subject_id").notNull(),
    certificatePem: text("certificate_pem").notNull(),
    /** Kept only for instance certificates, which the node fetches for each partition. */
    privateKeyPem: text("private_key_pem"),
    issuedAt: timestamp("issued_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (table) => [index("certificates_subject_idx").on(table.kind, table.subjectId)],
);

export const registrationTokens = pgTable("registration_tokens", {
  /** sha256 of the token: the token itself is shown once and never stored. */
  tokenHash: text("token_hash").primaryKey(),
  personId: text("person_id")
    .notNull()
    .references(() => persons.id),
  /** Set when the token re-registers an existing computer (a rebuilt node). */
  computerId: text("computer_id"),
  expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  usedAt: timestamp("used_at", { withTimezone: true }),
  createdAt: createdAt(),
});
