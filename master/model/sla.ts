import { type SQL, sql } from "drizzle-orm";
import { invalid } from "./errors.js";

/**
 * The conditions a request may set on where it runs. Values travel as strings, as in SlapOS's
 * `filter_kw`; numeric ones are checked here.
 */
export const SLA_KEYS = {
  computer_guid: "run on this computer",
  instance_guid: "shared instances: be served by this instance",
  region: "run on a computer in this region",
  cpu_architecture: "run on a computer with this CPU architecture (e.g. x86_64)",
  cpu_cores: "minimum CPU cores of the computer",
  memory_mb: "minimum memory of the computer, in MiB",
  disk_gb: "minimum disk of the computer, in GiB",
  max_price: "maximum price per partition-hour",
} as const;

export type SlaKey = keyof typeof SLA_KEYS;

export interface Sla {
  computerGuid?: string;
  instanceGuid?: string;
  region?: string;
  cpuArchitecture?: string;
  cpuCores?: number;
  memoryMb?: number;
  diskGb?: number;
  maxPrice?: number;
}

const NUMERIC_KEYS = new Set<SlaKey>(["cpu_cores", "memory_mb", "disk_gb", "max_price"]);

function isSlaKey(key: string): key is SlaKey {
  return Object.hasOwn(SLA_KEYS, key);
}

/** Parses an SLA dict; unknown keys and non-numeric minimums are refused, naming the key. */
export function parseSla(raw: Record<string, string>): Sla {
  const sla: Sla = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!isSlaKey(key)) {
      throw invalid(
        `sla.${key}`,
        `unknown SLA key '${key}'; known keys: ${Object.keys(SLA_KEYS).join(", ")}`,
      );
    }
    if (NUMERIC_KEYS.has(key)) {
      const number = Number(value);
      if (value.trim() === "" || !Number.isFinite(number) || number < 0) {
        throw invalid(
          `sla.${key}`,
          `SLA key '${key}' (${SLA_KEYS[key]}) must be a non-negative number, not '${value}'`,
        );
      }
    }
    switch (key) {
      case "computer_guid":
        sla.computerGuid = value;
        break;
      case "instance_guid":
        sla.instanceGuid = value;
        break;
      case "region":
        sla.region = value;
        break;
      case "cpu_architecture":
        sla.cpuArchitecture = value;
        break;
      case "cpu_cores":
        sla.cpuCores = Number(value);
        break;
      case "memory_mb":
        sla.memoryMb = Number(value);
        break;
      case "disk_gb":
        sla.diskGb = Number(value);
        break;
      case "max_price":
        sla.maxPrice = Number(value);
        break;
    }
  }
  return sla;
}

/** The keys that choose a computer (`instance_guid` chooses a host instance instead). */
export const COMPUTER_SLA_KEYS = [
  "computer_guid",
  "region",
  "cpu_architecture",
  "cpu_cores",
  "memory_mb",
  "disk_gb",
  "max_price",
] as const satisfies readonly SlaKey[];

export type ComputerSlaKey = (typeof COMPUTER_SLA_KEYS)[number];

export function isNumericSlaKey(key: SlaKey): boolean {
  return NUMERIC_KEYS.has(key);
}

/**
 * What one SLA key asks of computer `c`, given the wanted value as SQL (a bound parameter at
 * request time, or the waiting request's own column when capacity appears): the one definition
 * of each condition, so a request is placed by the same rules whenever it is placed.
 */
export function slaCondition(key: ComputerSlaKey, wanted: SQL): SQL {
  switch (key) {
    case "computer_guid":
      return sql`c.id = ${wanted}`;
    case "region":
      return sql`c.region = ${wanted}`;
    case "cpu_architecture":
      return sql`c.capabilities->>'cpu_architecture' = ${wanted}`;
    case "cpu_cores":
      return sql`(c.capabilities->>'cpu_cores')::float8 >= ${wanted}`;
    case "memory_mb":
      return sql`(c.capabilities->>'memory_mb')::float8 >= ${wanted}`;
    case "disk_gb":
      return sql`(c.capabilities->>'disk_gb')::float8 >= ${wanted}`;
    case "max_price":
      return sql`c.price_per_partition_hour <= ${wanted}`;
  }
}
