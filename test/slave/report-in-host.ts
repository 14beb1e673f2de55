import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { UsageRecord } from "../../protocol/client.js";
import type { LocalPartition } from "../../slave/partitions.js";
import type { TestHost } from "../hosts/index.js";

/** The compiled meter: nftables rules must be made inside the host, so the code runs there, in its own node. */
const COMPILED_METER = fileURLToPath(new URL("../../dist/slave/report/index.js", import.meta.url));
const PINO = createRequire(import.meta.url).resolve("pino");

const SCRIPT = `
const { UsageMeter } = await import(${JSON.stringify(pathToFileURL(COMPILED_METER).href)});
const { default: pino } = await import(${JSON.stringify(pathToFileURL(PINO).href)});
const { operation, partitions, stateFile, alterNetwork } = JSON.parse(Buffer.from(process.env.METER_ARGS, "base64"));
const meter = new UsageMeter({ stateFile, alterNetwork, logger: pino({ level: "warn" }, pino.destination(2)) });
let result = null;
if (operation === "ensureAccounting") await meter.ensureAccounting(partitions);
if (operation === "collect") result = await meter.collect(partitions);
if (operation === "removeAccounting") await meter.removeAccounting();
console.log(JSON.stringify(result));
`;

type Operation = "ensureAccounting" | "collect" | "removeAccounting";

/**
 * Runs one UsageMeter operation inside the host, in a new node process each time (as a restarted
 * agent would), with its state in the host's own /root.
 */
export async function meterInHost(
  host: TestHost,
  operation: Operation,
  partitions: LocalPartition[] = [],
): Promise<UsageRecord[] | null> {
  if (!existsSync(COMPILED_METER)) {
    throw new Error(`${COMPILED_METER} is missing: run 'npm run build' before this test`);
  }
  const args = { operation, partitions, stateFile: "/root/usage-state.json", alterNetwork: true };
  const encode = (text: string) => Buffer.from(text).toString("base64");
  const output = await host.execOrThrow(
    `METER_ARGS=${encode(JSON.stringify(args))} node --input-type=module -e "$(echo ${encode(SCRIPT)} | base64 -d)"`,
  );
  return JSON.parse(output) as UsageRecord[] | null;
}
