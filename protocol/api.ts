import { z } from "@hono/zod-openapi";

// The JSON API's bodies, shared by the master (validation, OpenAPI document) and its clients.

const Parameters = z.record(z.string(), z.string()).openapi({ example: { name: "blog" } });
const Timestamp = z.string().openapi({ format: "date-time" });

/** Who a computer takes requests from, and whose shared instances an instance serves. */
export const Scope = z.enum(["personal", "organisation", "open"]).openapi("Scope", {
  description: "personal: the owner only; organisation: members of the owner's organisations; open: anyone",
});

export const ErrorBody = z
  .object({
    error: z.object({
      kind: z.enum([
        "invalid",
        "unauthenticated",
        "forbidden",
        "not_found",
        "conflict",
        "not_ready",
        "too_large",
      ]),
      message: z.string(),
      field: z.string().optional(),
    }),
  })
  .openapi("Error");

export const Capabilities = z
  .object({
    cpu_architecture: z.string().min(1).optional(),
    cpu_cores: z.number().int().positive().optional(),
    memory_mb: z.number().int().positive().optional(),
    disk_gb: z.number().int().positive().optional(),
  })
  .strict()
  .openapi("Capabilities");

export const PartitionAddress = z
  .object({
    interface: z.string().min(1).max(32),
    address: z.string().min(1).max(64),
    netmask: z.string().min(1).max(64),
  })
  .strict()
  .openapi("PartitionAddress");

/** What the master sets on one partition (the Pulumi `Partition` resource), beyond what format made. */
const PartitionExtras = z.object({
  routableIpv4: z.string().max(64).optional(),
  blockDevice: z.string().max(256).optional(),
});

export const PartitionReference = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, "a partition reference is 1-64 letters, digits, '_', '.' or '-'");

/** What `slap node format` made: the node's to say. Extras belong to the master and are never uploaded. */
export const PartitionLayout = z
  .object({
    reference: PartitionReference,
    addresses: z.array(PartitionAddress).max(16),
    tap: z.string().min(1).max(32).nullable().optional(),
  })
  .strict()
  .openapi("PartitionLayout");

/** `/dev/` then path segments that neither start with a dot nor hold spaces: no `..`, no escape from /dev. */
const DEVICE_PATH = /^\/dev(\/[A-Za-z0-9_+:@-][A-Za-z0-9._+:@-]*)+$/;

/** The extras of one partition: a value sets it, null clears it, absent keeps it. */
export const PartitionSettings = z
  .object({
    routableIpv4: z
      .ipv4({ message: "routableIpv4 must be an IPv4 address in dotted form, e.g. 203.0.113.7" })
      .nullable()
      .optional()
      .openapi({
        description: "An IPv4 address the node adds to its interface as /32 for this partition alone",
      }),
    blockDevice: z
      .string()
      .max(256)
      .regex(DEVICE_PATH, "blockDevice must be an absolute path under /dev/, e.g. /dev/vdb")
      .nullable()
      .optional()
      .openapi({ description: "A block device the node gives to the partition's user (mode 0600)" }),
  })
  .strict()
  .openapi("PartitionSettings");

export const PartitionView = z
  .object({
    reference: z.string(),
    addresses: z.array(PartitionAddress),
    tap: z.string().nullable(),
    extras: PartitionExtras,
    state: z.enum(["free", "busy"]),
    instanceId: z.string().nullable(),
  })
  .openapi("Partition");

export const SoftwareView = z
  .object({
    url: z.string(),
    requestedState: z.enum(["available", "destroyed"]),
    reportedState: z.enum(["building", "available", "error", "destroyed"]).nullable(),
    errorLog: z.string().nullable(),
  })
  .openapi("SoftwareInstallation");

export const ComputerView = z
  .object({
    id: z.string(),
    title: z.string(),
    ownerId: z.string(),
    region: z.string().nullable(),
    capabilities: Capabilities,
    pricePerPartitionHour: z.number(),
    allocationScope: Scope,
    lastContactAt: Timestamp.nullable(),
    desiredVersion: z.number().int(),
    partitions: z.array(PartitionView),
    software: z.array(SoftwareView),
  })
  .openapi("Computer");

export const ComputerSettings = z
  .object({
    title: z.string().min(1).max(200).optional(),
    region: z.string().min(1).max(100).nullable().optional(),
    capabilities: Capabilities.optional(),
    pricePerPartitionHour: z.number().nonnegative().optional(),
    allocationScope: Scope.optional().openapi({
      description:
        "Whose requests may be placed here (and so supply their releases here): personal (default: the owner only), organisation (members of the owner's organisations), open (anyone)",
    }),
  })
  .strict()
  .openapi("ComputerSettings");

export const SupplyRequest = z
  .object({
    url: z.string().min(1).max(2048),
    state: z.enum(["available", "destroyed"]).default("available"),
  })
  .strict()
  .openapi("Supply");

export const SoftwareReport = z
  .object({
    url: z.string().min(1).max(2048),
    state: z.enum(["building", "available", "error", "destroyed"]),
    errorLog: z.string().max(65_536).optional(),
  })
  .strict()
  .openapi("SoftwareReport");

export const InstanceRequest = z
  .object({
    title: z.string().min(1).max(200),
    softwareReleaseUrl: z.string().min(1).max(2048),
    softwareType: z.string().min(1).max(200).optional(),
    parameters: Parameters.optional(),
    sla: z
      .record(z.string(), z.string())
      .optional()
      .openapi({ example: { region: "eu", cpu_cores: "4" } }),
    shared: z.boolean().optional(),
    state: z.enum(["started", "stopped", "destroyed"]).optional(),
    sharingScope: Scope.optional().openapi({
      description:
        "Whose shared instances this instance agrees to serve (default personal: its owner's only); absent on a re-request: unchanged",
    }),
  })
  .strict()
  .openapi("InstanceRequest");

export const InstanceView = z
  .object({
    id: z.string(),
    title: z.string(),
    softwareReleaseUrl: z.string(),
    softwareType: z.string(),
    parameters: Parameters,
    sla: z.record(z.string(), z.string()),
    shared: z.boolean(),
    sharingScope: Scope,
    requestedState: z.enum(["started", "stopped", "destroyed"]),
    reportedState: z.enum(["started", "stopped", "destroyed", "error"]).nullable(),
    status: z.enum(["pending", "deploying", "ready", "error", "destroying", "destroyed"]),
    errorLog: z.string().nullable(),
    connectionParameters: Parameters,
    computerId: z.string().nullable(),
    partitionReference: z.string().nullable(),
    ipList: z.array(z.string()),
    addresses: z.array(PartitionAddress),
    hostInstanceId: z.string().nullable(),
    parentId: z.string().nullable(),
    rootId: z.string(),
    ownerId: z.string(),
    timestamp: z.number().int(),
    reportedTimestamp: z.number().int().nullable(),
    createdAt: Timestamp,
    destroyedAt: Timestamp.nullable(),
  })
  .openapi("Instance");

export const InstanceStateReport = z
  .object({
    state: z.enum(["started", "stopped", "error"]),
    errorLog: z.string().max(65_536).optional(),
    timestamp: z.number().int().nonnegative().optional().openapi({
      description:
        "The timestamp of the desired state the node deployed. A report about an older one is refused (409); absent, the report is about the current one.",
    }),
  })
  .strict()
  .openapi("InstanceStateReport");

export const ConnectionParameters = z
  .object({ parameters: Parameters })
  .strict()
  .openapi("ConnectionParameters");

export const Credentials = z
  .object({ certificate: z.string(), privateKey: z.string(), caCertificate: z.string() })
  .openapi("Credentials");

export const RegistrationRequest = z
  .object({ token: z.string().min(1).max(200), title: z.string().min(1).max(200).optional() })
  .strict()
  .openapi("RegistrationRequest");

export const Registration = Credentials.extend({ computerId: z.string() }).openapi("Registration");

export const TokenRequest = z
  .object({
    computerId: z.string().optional(),
    ttlSeconds: z.number().int().min(60).max(2_592_000).optional(),
  })
  .strict()
  .openapi("TokenRequest");

export const Token = z.object({ token: z.string(), expiresAt: Timestamp }).openapi("RegistrationToken");

export const PersonRequest = z
  .object({
    name: z.string().min(1).max(200),
    email: z.string().email().optional(),
    isAdmin: z.boolean().optional(),
  })
  .strict()
  .openapi("PersonRequest");

export const PersonIdentity = z
  .object({ personId: z.string(), certificate: z.string(), privateKey: z.string() })
  .openapi("PersonIdentity");

export const DesiredState = z
  .object({
    computerId: z.string(),
    version: z.number().int(),
    software: z.array(z.object({ url: z.string(), requestedState: z.enum(["available", "destroyed"]) })),
    partitions: z.array(
      z.object({
        reference: z.string(),
        addresses: z.array(PartitionAddress),
        tap: z.string().nullable(),
        extras: PartitionExtras,
        instance: z
          .object({
            id: z.string(),
            title: z.string(),
            rootTitle: z.string(),
            softwareReleaseUrl: z.string(),
            softwareType: z.string(),
            parameters: Parameters,
            requestedState: z.enum(["started", "stopped", "destroyed"]),
            timestamp: z.number().int(),
            connectionParameters: Parameters,
            sharedInstances: z.array(
              z.object({
                id: z.string(),
                title: z.string(),
                softwareType: z.string(),
                parameters: Parameters,
              }),
            ),
          })
          .nullable(),
      }),
    ),
  })
  .openapi("DesiredState");

export const UsageRecord = z
  .object({
    partitionReference: z.string().min(1),
    periodStart: Timestamp,
    periodEnd: Timestamp,
    cpuSeconds: z.number().nonnegative(),
    memoryBytes: z.number().int().nonnegative(),
    diskBytes: z.number().int().nonnegative(),
    networkRxBytes: z.number().int().nonnegative(),
    networkTxBytes: z.number().int().nonnegative(),
  })
  .strict()
  .openapi("UsageRecord");

export const UsageReport = z
  .object({ records: z.array(UsageRecord).max(10_000) })
  .strict()
  .openapi("UsageReport");

export const Bill = z
  .object({
    personId: z.string(),
    from: Timestamp,
    to: Timestamp,
    total: z.number(),
    lines: z.array(
      z.object({
        contractId: z.number().int(),
        instanceId: z.string(),
        computerId: z.string(),
        partitionReference: z.string(),
        pricePerHour: z.number(),
        hours: z.number(),
        amount: z.number(),
        usage: z.object({
          cpuSeconds: z.number(),
          networkRxBytes: z.number(),
          networkTxBytes: z.number(),
          maxMemoryBytes: z.number(),
          maxDiskBytes: z.number(),
        }),
      }),
    ),
  })
  .openapi("Bill");

export type InstanceRequestBody = z.infer<typeof InstanceRequest>;
export type InstanceViewBody = z.infer<typeof InstanceView>;
export type ComputerViewBody = z.infer<typeof ComputerView>;
export type DesiredStateBody = z.infer<typeof DesiredState>;
export type ErrorBodyType = z.infer<typeof ErrorBody>;

/**
 * A renewed person or computer certificate, answered once (the master keeps no copy of the key).
 * The certificate that asked keeps working until its own expiry.
 */
export const RenewedCertificate = Credentials.extend({ expiresAt: Timestamp }).openapi("RenewedCertificate");

export const OrganisationRole = z.enum(["manager", "member"]).openapi("OrganisationRole", {
  description: "manager: adds and removes members; member: takes part in its computers' organisation scope",
});

export const OrganisationRequest = z
  .object({ title: z.string().min(1).max(200) })
  .strict()
  .openapi("OrganisationRequest");

export const OrganisationMemberSettings = z
  .object({ role: OrganisationRole })
  .strict()
  .openapi("OrganisationMemberSettings");

export const OrganisationView = z
  .object({
    id: z.string(),
    title: z.string(),
    createdAt: Timestamp,
    members: z.array(
      z.object({ personId: z.string(), name: z.string(), role: OrganisationRole, since: Timestamp }),
    ),
  })
  .openapi("Organisation");
