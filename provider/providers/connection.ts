import { MasterClient, type MasterConnection } from "../../protocol/client.js";
import { loadClientConfig } from "../../protocol/client-config.js";
import type { MasterSettings } from "../master.js";

/** The stack config's `slapos:*` settings, as the plugin process received them. */
export type StackSettings = Partial<Record<keyof MasterSettings | "masterUrl", string>>;

/**
 * The master to talk to, in order: the resource's `master` input, the stack config, the
 * `SLAPOS_*` environment, the client configuration file (`$SLAP_CONFIG`, `~/.slap/config.json`).
 */
export async function resolveMaster(
  input: MasterSettings | undefined,
  stack: StackSettings,
): Promise<MasterConnection> {
  if (input?.url) {
    return { url: input.url, ca: input.caCertificate, certificate: input.certificate, key: input.privateKey };
  }
  if (stack.masterUrl) {
    return {
      url: stack.masterUrl,
      ca: stack.caCertificate,
      certificate: stack.certificate,
      key: stack.privateKey,
    };
  }
  const env = process.env;
  if (env.SLAPOS_MASTER_URL) {
    return {
      url: env.SLAPOS_MASTER_URL,
      ca: env.SLAPOS_CA_CERTIFICATE,
      certificate: env.SLAPOS_CERTIFICATE,
      key: env.SLAPOS_PRIVATE_KEY,
    };
  }
  const file = await loadClientConfig();
  if (file) return file;
  throw new Error(
    "no master to talk to: give the resource a `master` input, or set the stack config slapos:masterUrl (with slapos:caCertificate, slapos:certificate and the secret slapos:privateKey), or the environment SLAPOS_MASTER_URL (with SLAPOS_CA_CERTIFICATE, SLAPOS_CERTIFICATE, SLAPOS_PRIVATE_KEY), or SLAP_CONFIG=admin.json",
  );
}

/** Runs `work` with a client of the resolved master, closing it afterwards. */
export async function withMaster<T>(
  input: MasterSettings | undefined,
  stack: StackSettings,
  work: (client: MasterClient) => Promise<T>,
): Promise<T> {
  const client = new MasterClient(await resolveMaster(input, stack), { timeoutMs: 30_000 });
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}
