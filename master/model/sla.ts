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
