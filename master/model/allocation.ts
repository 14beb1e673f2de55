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

interface CandidateComputer extends Record<string, unknown> {
  id: string;
  owner_id: string;
  price: number;
  supplied: boolean;
}

interface FreePartition extends Record<string, unknown> {
  id: number;
  reference: string;
}

type Rows<T> = T[] | { rows: T[] };
const rowsOf = <T>(result: Rows<T>): T[] => (Array.isArray(result) ? result : result.rows);

/** How many computers to try when concurrent requests take the free partitions of the first. */
const MAX_ATTEMPTS = 8;

/**
 * Gives the instance a free partition on a computer that meets every SLA condition, preferring
 * computers where its release is already supplied, then the cheapest. Atomic: the partition row
 * is locked (`for update skip locked`), so concurrent requests never get the same partition, and
 * the unique index on partitions.instance_id backs that up. Records the trading contract and
 * supplies the release to the computer if it was not. Returns undefined when nothing matches.
 *
 * The computer is chosen first (walking the price index, checking for a free partition through
 * the partial index of free partitions), then one of its partitions: no query ever sorts all
 * the free partitions of the grid.
 */
export async function allocatePartition(
  tx: Executor,
  request: AllocationRequest,
): Promise<Allocation | undefined> {
  const { sla } = request;
  const conditions = [sql`c.deregistered_at is null`];
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
  conditions.push(sql`exists (select 1 from partitions f where f.computer_id = c.id and f.state = 'free')`);

  const tried: string[] = [];
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const eligible = [...conditions];
    if (tried.length > 0)
      eligible.push(
        sql`c.id not in (${sql.join(
          tried.map((id) => sql`${id}`),
          sql`, `,
        )})`,
      );
    const where = sql.join(eligible, sql` and `);
    const computers = rowsOf(
      (await tx.execute<CandidateComputer>(sql`
        (select c.id, c.owner_id, c.price_per_partition_hour as price, true as supplied
           from software_installations s join computers c on c.id = s.computer_id
          where s.url = ${request.softwareReleaseUrl} and s.requested_state = 'available' and ${where}
          order by c.price_per_partition_hour, c.id limit 1)
        union all
        (select c.id, c.owner_id, c.price_per_partition_hour as price, false as supplied
           from computers c
          where ${where}
          order by c.price_per_partition_hour, c.id limit 1)`)) as Rows<CandidateComputer>,
    );
    const computer = computers[0];
    if (!computer) return undefined;
    const [partition] = rowsOf(
      (await tx.execute<FreePartition>(sql`
        select id, reference from partitions
         where computer_id = ${computer.id} and state = 'free'
         order by id limit 1
         for update skip locked`)) as Rows<FreePartition>,
    );
    if (!partition) {
      tried.push(computer.id); // its free partitions are being taken right now: next computer
      continue;
    }
    await place(tx, request, computer, partition);
    return { partitionId: partition.id, reference: partition.reference, computerId: computer.id };
  }
  return undefined;
}

async function place(
  tx: Executor,
  request: AllocationRequest,
  computer: CandidateComputer,
  partition: FreePartition,
): Promise<void> {
  await tx
    .update(partitions)
    .set({ state: "busy", instanceId: request.instanceId })
    .where(and(eq(partitions.id, partition.id), isNull(partitions.instanceId)));
  await tx
    .update(softwareInstances)
    .set({ partitionId: partition.id })
    .where(eq(softwareInstances.id, request.instanceId));
  if (!computer.supplied) {
    await tx
      .insert(softwareInstallations)
      .values({ computerId: computer.id, url: request.softwareReleaseUrl, requestedState: "available" })
      .onConflictDoUpdate({
        target: [softwareInstallations.computerId, softwareInstallations.url],
        set: { requestedState: "available", requestedAt: sql`now()` },
      });
  }
  await tx.insert(contracts).values({
    instanceId: request.instanceId,
    requesterId: request.requesterId,
    providerId: computer.owner_id,
    computerId: computer.id,
    partitionReference: partition.reference,
    conditions: request.conditions,
    pricePerHour: Number(computer.price),
  });
  await bumpComputers(tx, [computer.id]);
}
