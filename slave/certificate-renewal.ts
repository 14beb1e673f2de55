import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { MasterClient } from "../protocol/client.js";
import type { NodeConfig } from "./config.js";
import { replaceCredentialFiles } from "./credential-files.js";

const DAY_MS = 86_400_000;
/** How often a running agent looks at its certificate's end: the renewal window is days long. */
export const RENEWAL_CHECK_MS = 3_600_000;

export type RenewalOutcome = "renewed" | "not due" | "off";

/**
 * Renews the computer's certificate when it expires within `certificate_renewal_days`: the
 * master makes a new key and certificate, they replace cert_file and key_file, and the client
 * presents them from then on. Should anything fail, the current certificate stays in use (it
 * keeps working until it expires) and a later check tries again.
 */
export async function renewCertificateIfDue(
  config: Pick<NodeConfig, "certFile" | "keyFile" | "certificateRenewalDays" | "computerId">,
  client: MasterClient,
  logger: Logger,
): Promise<RenewalOutcome> {
  const { certFile, keyFile } = config;
  if (!certFile || !keyFile || config.certificateRenewalDays <= 0) return "off";
  const current = new X509Certificate(await readFile(certFile, "utf8"));
  const expiresAt = new Date(current.validTo);
  if (expiresAt.getTime() - Date.now() > config.certificateRenewalDays * DAY_MS) return "not due";
  const renewed = await client.renewCertificate();
  await replaceCredentialFiles(
    { certFile, keyFile },
    { certificate: renewed.certificate, privateKey: renewed.privateKey },
  );
  client.useCredentials(renewed.certificate, renewed.privateKey);
  logger.info(
    {
      computerId: config.computerId,
      certFile,
      previousExpiry: expiresAt.toISOString(),
      expiresAt: renewed.expiresAt,
    },
    "renewed the computer's certificate",
  );
  return "renewed";
}

/**
 * Checks now and every RENEWAL_CHECK_MS until stopped, in the background: a failed renewal is
 * logged, never fatal (an agent must start and run while the master is away). `stop` waits for
 * a check under way, so that no file is being replaced once the agent lets go of its lock.
 */
export function keepCertificateRenewed(
  config: Pick<NodeConfig, "certFile" | "keyFile" | "certificateRenewalDays" | "computerId">,
  client: MasterClient,
  logger: Logger,
): { stop: () => Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const check = () => {
    running = running.then(() =>
      renewCertificateIfDue(config, client, logger).then(
        () => {},
        (error) =>
          logger.warn(
            { err: error, certFile: config.certFile },
            "could not renew the computer's certificate; the current one stays in use and renewal is tried again within the hour",
          ),
      ),
    );
  };
  const timer = setInterval(check, RENEWAL_CHECK_MS);
  timer.unref();
  check();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
