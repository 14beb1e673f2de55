import type { AgentContext } from "./context.js";
import { readLocalPartitions } from "./partitions.js";
import { UsageMeter } from "./report/index.js";

export function usageMeter(context: AgentContext): UsageMeter {
  return new UsageMeter({
    stateFile: `${context.config.instanceRoot}/var/usage-state.json`,
    alterNetwork: context.config.format.alterNetwork,
    logger: context.logger,
    cgroups: context.cgroups,
  });
}

/** Measures every partition and sends what was used since the last report; returns the record count. */
export async function sendUsage(context: AgentContext, meter: UsageMeter): Promise<number> {
  const partitions = await readLocalPartitions(context.config, context.logger);
  await meter.ensureAccounting(partitions);
  const records = await meter.collect(partitions);
  if (records.length > 0) await context.client.reportUsage(context.config.computerId, records);
  return records.length;
}
