import { MasterClient, type MasterConnection } from "../../protocol/client.js";
import { loadClientConfig } from "../../protocol/client-config.js";
import type { MasterSettings } from "../master.js";

/** The stack config's `slapos:*` settings, as the plugin process received them. */
export type StackSettings = Partial<
  Record<"masterUrl" | "caCertificate" | "certificate" | "privateKey", string>
>;

/**
 * The master to talk to, in order: the resource's `master` input, the stack config, the
 * `SLAPOS_*` environment, the client configuration file (`$SLAP_CONFIG`, `~/.slap/config.json`).
 */
async function resolveMaster(
  input: MasterSettings | undefined,
  stack: StackSettings,
): Promise<MasterConnection> {
  const env = process.env;
  const { masterUrl, ...identity } = stack;
  const sources: Partial<MasterSettings>[] = [
    input ?? {},
    { url: masterUrl, ...identity },
    {
      url: env.SLAPOS_MASTER_URL,
      caCertificate: env.SLAPOS_CA_CERTIFICATE,
      certificate: env.SLAPOS_CERTIFICATE,
      privateKey: env.SLAPOS_PRIVATE_KEY,
    },
  ];
  const settings = sources.find((source) => source.url);
  if (settings?.url) {
    return {
      url: settings.url,
      ca: settings.caCertificate,
      certificate: settings.certificate,
      key: settings.privateKey,
    };
  }
  const file = await loadClientConfig();
  if (file) return file;
  throw new Error(
    "no master to talk to: give the resource a `master` input, or set the stack config slapos:masterUrl (with slapos:caCertificate, slapos:certificate and the secret slapos:privateKey), or the environment SLAPOS_MASTER_URL (with SLAPOS_CA_CERTIFICATE, SLAPOS_CERTIFICATE, SLAPOS_PRIVATE_KEY), or SLAP_CONFIG=admin.json",
  );
}

/** Runs `work` with a client of the resolved master (and where it is), closing the client afterwards. */
export async function withMaster<T>(
  input: MasterSettings | undefined,
  stack: StackSettings,
  work: (client: MasterClient, connection: MasterConnection) => Promise<T>,
): Promise<T> {
  const connection = await resolveMaster(input, stack);
  const client = new MasterClient(connection, { timeoutMs: 30_000 });
  try {
    return await work(client, connection);
  } finally {
    await client.close();
  }
}
