import { and, eq, isNull, sql } from "drizzle-orm";
import type { Executor } from "../db/connect.js";
import { contracts, partitions, softwareInstallations, softwareInstances } from "../db/schema.js";
import { bumpComputers } from "./changes.js";
import type { Sla } from "./sla.js";

export interface AllocationRequest {
  instanceId: string;
  softwareReleaseUrl: string;
  sla: Sla;
  /** The SLA as asked, recorded in the contract. */
  conditions: Record<string, string>;
  requesterId: string;
}

export interface Allocation {
  partitionId: number;
  reference: string;
  computerId: string;
}

interface Candidate extends Record<string, unknown> {
  partition_id: number;
  reference: string;
  computer_id: string;
  owner_id: string;
  price: number;
  supplied: boolean;
}

/**
 * Gives the instance a free partition on a computer that meets every SLA condition, preferring
 * computers where its release is already supplied, then the cheapest. Atomic: the partition row
 * is locked (`for update skip locked`), so concurrent requests never get the same partition, and
 * the unique index on partitions.instance_id backs that up. Records the trading contract and
 * supplies the release to the computer if it was not. Returns undefined when nothing matches.
 */
export async function allocatePartition(
  tx: Executor,
  request: AllocationRequest,
): Promise<Allocation | undefined> {
  const { sla } = request;
  const conditions = [sql`p.state = 'free'`, sql`c.deregistered_at is null`];
  if (sla.computerGuid !== undefined) conditions.push(sql`c.id = ${sla.computerGuid}`);
  if (sla.region !== undefined) conditions.push(sql`c.region = ${sla.region}`);
  if (sla.cpuArchitecture !== undefined)
    conditions.push(sql`c.capabilities->>'cpu_architecture' = ${sla.cpuArchitecture}`);
  if (sla.cpuCores !== undefined)
    conditions.push(sql`(c.capabilities->>'cpu_cores')::float8 >= ${sla.cpuCores}`);
  if (sla.memoryMb !== undefined)
    conditions.push(sql`(c.capabilities->>'memory_mb')::float8 >= ${sla.memoryMb}`);
  if (sla.diskGb !== undefined) conditions.push(sql`(c.capabilities->>'disk_gb')::float8 >= ${sla.diskGb}`);
  if (sla.maxPrice !== undefined) conditions.push(sql`c.price_per_partition_hour <= ${sla.maxPrice}`);

  const result = await tx.execute<Candidate>(sql`
    select p.id as partition_id, p.reference, c.id as computer_id, c.owner_id,
           c.price_per_partition_hour as price, (s.url is not null) as supplied
    from partitions p
    join computers c on c.id = p.computer_id
    left join software_installations s
      on s.computer_id = c.id and s.url = ${request.softwareReleaseUrl} and s.requested_state = 'available'
    where ${sql.join(conditions, sql` and `)}
    order by (s.url is null), c.price_per_partition_hour, p.id
    limit 1
    for update of p skip locked`);
  const rows = (Array.isArray(result) ? result : (result as { rows: Candidate[] }).rows) as Candidate[];
  const candidate = rows[0];
  if (!candidate) return undefined;

  await tx
    .update(partitions)
    .set({ state: "busy", instanceId: request.instanceId })
    .where(and(eq(partitions.id, candidate.partition_id), isNull(partitions.instanceId)));
  await tx
    .update(softwareInstances)
    .set({ partitionId: candidate.partition_id })
    .where(eq(softwareInstances.id, request.instanceId));
  if (!candidate.supplied) {
    await tx
      .insert(softwareInstallations)
      .values({
        computerId: candidate.computer_id,
        url: request.softwareReleaseUrl,
        requestedState: "available",
      })
      .onConflictDoUpdate({
        target: [softwareInstallations.computerId, softwareInstallations.url],
        set: { requestedState: "available", requestedAt: sql`now()` },
      });
  }
  await tx.insert(contracts).values({
    instanceId: request.instanceId,
    requesterId: request.requesterId,
    providerId: candidate.owner_id,
    computerId: candidate.computer_id,
    partitionReference: candidate.reference,
    conditions: request.conditions,
    pricePerHour: Number(candidate.price),
  });
  await bumpComputers(tx, [candidate.computer_id]);
  return {
    partitionId: candidate.partition_id,
    reference: candidate.reference,
    computerId: candidate.computer_id,
  };
}
