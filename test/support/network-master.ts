import { readFile } from "node:fs/promises";
import { join } from "node:path";
import pino from "pino";
import { type ClientConfig, type RunningMaster, startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import type { TestNetwork } from "../hosts/network.js";

/** A master that test hosts reach over HTTPS on their network's gateway, and its admin. */
export interface NetworkMaster {
  master: RunningMaster;
  admin: MasterClient;
  /** The master's CA certificate (PEM), which nodes check the master with. */
  ca: string;
  /** The stack config (`slapos:*`) with which the Pulumi provider talks to this master as its admin. */
  stackConfig: Record<string, { value: string; secret?: boolean }>;
  /** Stops the admin client and the master (its data directory stays). */
  close(): Promise<void>;
}

export async function startNetworkMaster(
  network: TestNetwork,
  dataDir: string,
  port = 0,
): Promise<NetworkMaster> {
  const master = await startMaster({
    dataDir: join(dataDir, "master"),
    host: network.gatewayIpv4,
    port,
    logger: pino({ level: "silent" }),
  });
  const adminConfig = JSON.parse(await readFile(master.adminConfigPath, "utf8")) as ClientConfig;
  const admin = new MasterClient({ ...adminConfig, url: master.url });
  return {
    master,
    admin,
    ca: adminConfig.ca ?? "",
    stackConfig: {
      "slapos:masterUrl": { value: master.url },
      "slapos:caCertificate": { value: adminConfig.ca ?? "" },
      "slapos:certificate": { value: adminConfig.certificate ?? "" },
      "slapos:privateKey": { value: adminConfig.key ?? "", secret: true },
    },
    close: async () => {
      await admin.close();
      await master.close();
    },
  };
}
