import { sql } from "drizzle-orm";
import { DESIRED_STATE_CHANNEL, type Executor, type Rows, rowsOf } from "../db/connect.js";
import { scopeAdmits } from "./scope.js";
import { COMPUTER_SLA_KEYS, type ComputerSlaKey, type Sla, slaCondition } from "./sla.js";

export interface AllocationRequest {
  instanceId: string;
  softwareReleaseUrl: string;
  sla: Sla;
  /** The SLA as asked, recorded in the contract. */
  conditions: Record<string, string>;
  /** The person owning the instance's tree: the computers' allocation scopes must admit them. */
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

/** How many computers to try when concurrent requests take the free partitions of the first. */
const MAX_ATTEMPTS = 8;
/** Among equally good computers, how many the choice is spread over. */
const SPREAD = 16;

/**
 * The best candidate: supplied before not supplied, then cheapest; ties are broken at random, so
 * concurrent requests spread over equally good computers instead of queueing on one.
 */
function pickCandidate(candidates: CandidateComputer[]): CandidateComputer | undefined {
  const first = candidates[0];
  if (!first) return undefined;
  const best = candidates.filter(
    (candidate) => candidate.supplied === first.supplied && Number(candidate.price) === Number(first.price),
  );
  return best[Math.floor(Math.random() * best.length)];
}

/**
 * Gives the instance a free partition on a computer whose allocation scope admits the requester
 * and that meets every SLA condition, preferring computers where its release is already
 * supplied, then the cheapest. Only such a computer is ever supplied the requester's release:
 * this is the one way a request reaches a computer. Atomic: the partition row is locked
 * (`for update skip locked`), so concurrent requests never get the same partition, and the
 * unique index on partitions.instance_id backs that up. Records the trading contract and
 * supplies the release to the computer if it was not. Returns undefined when nothing matches.
 *
 * The computer is chosen first (walking the index of computers with free partitions, cheapest
 * first), then one of its partitions: no query ever scans the free partitions of the grid.
 * Equally good computers share the load at random.
 */
export async function allocatePartition(
  tx: Executor,
  request: AllocationRequest,
): Promise<Allocation | undefined> {
  const { sla } = request;
  const conditions = [
    // Matches the partial index computers_available_idx.
    sql`c.free_partitions > 0`,
    sql`c.deregistered_at is null`,
    // The owner's consent. A filter on the index walk, not an index condition: computers that
    // refuse the requester are skipped while walking in price order, so the cheapest admitting
    // computers still come first and the limit counts only admitting ones.
    scopeAdmits(sql`c.allocation_scope`, sql`c.owner_id`, request.requesterId),
  ];
  const wanted: Record<ComputerSlaKey, string | number | undefined> = {
    computer_guid: sla.computerGuid,
    region: sla.region,
    cpu_architecture: sla.cpuArchitecture,
    cpu_cores: sla.cpuCores,
    memory_mb: sla.memoryMb,
    disk_gb: sla.diskGb,
    max_price: sla.maxPrice,
  };
  for (const key of COMPUTER_SLA_KEYS) {
    const value = wanted[key];
    if (value !== undefined) conditions.push(slaCondition(key, sql`${value}`));
  }

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
    const candidates = rowsOf(
      (await tx.execute<CandidateComputer>(sql`
        (select c.id, c.owner_id, c.price_per_partition_hour as price, true as supplied
           from software_installations s join computers c on c.id = s.computer_id
          where s.url = ${request.softwareReleaseUrl} and s.requested_state = 'available' and ${where}
          order by c.price_per_partition_hour, c.id limit ${SPREAD})
        union all
        (select c.id, c.owner_id, c.price_per_partition_hour as price, false as supplied
           from computers c
          where ${where}
          order by c.price_per_partition_hour, c.id limit ${SPREAD})`)) as Rows<CandidateComputer>,
    );
    const computer = pickCandidate(candidates);
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

/**
 * Records the allocation in one statement: the partition becomes busy, the instance points at
 * it, the release is supplied there if it was not, the contract starts, and the computer's node
 * is told (its desired-state version moves, on commit).
 */
async function place(
  tx: Executor,
  request: AllocationRequest,
  computer: CandidateComputer,
  partition: FreePartition,
): Promise<void> {
  await tx.execute(sql`
    with taken as (
      update partitions set state = 'busy', instance_id = ${request.instanceId}
      where id = ${partition.id} and instance_id is null returning id),
    placed as (
      update software_instances set partition_id = ${partition.id} where id = ${request.instanceId} returning id),
    supplied as (
      insert into software_installations (computer_id, url, requested_state)
      values (${computer.id}, ${request.softwareReleaseUrl}, 'available')
      on conflict (computer_id, url) do update set requested_state = 'available', requested_at = now()
      where software_installations.requested_state <> 'available'
      returning url),
    contract as (
      insert into contracts (instance_id, requester_id, provider_id, computer_id, partition_reference, conditions, price_per_hour)
      values (${request.instanceId}, ${request.requesterId}, ${computer.owner_id}, ${computer.id}, ${partition.reference},
              ${JSON.stringify(request.conditions)}::jsonb, ${Number(computer.price)})
      returning id),
    bumped as (
      update computers set desired_version = desired_version + 1, free_partitions = free_partitions - 1
      where id = ${computer.id} returning id)
    select pg_notify(${DESIRED_STATE_CHANNEL}, id) from bumped`);
}
