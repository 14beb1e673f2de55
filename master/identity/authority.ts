import { generateKeyPairSync, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { eq } from "drizzle-orm";
import forge from "node-forge";
import type { Db } from "../db/connect.js";
import { authority as authorityTable } from "../db/schema.js";

export type IdentityKind = "person" | "computer" | "instance";

export interface Authority {
  certificatePem: string;
  privateKeyPem: string;
}

export interface IssuedCertificate {
  /** Upper-case hex, as Node reports a peer certificate's serialNumber. */
  serial: string;
  certificatePem: string;
  privateKeyPem: string;
  expiresAt: Date;
}

const DAY_MS = 86_400_000;

/** Loads the master's CA, creating it on the very first start (safe when masters start together). */
export async function loadOrCreateAuthority(db: Db): Promise<Authority> {
  const existing = await db.select().from(authorityTable).where(eq(authorityTable.id, 1));
  if (existing[0]) return existing[0];
  const created = createAuthority();
  await db
    .insert(authorityTable)
    .values({ id: 1, ...created })
    .onConflictDoNothing();
  const [row] = await db.select().from(authorityTable).where(eq(authorityTable.id, 1));
  if (!row) throw new Error("the certificate authority could not be stored");
  return row;
}

function newKeyPair(): {
  publicKey: forge.pki.PublicKey;
  privateKey: forge.pki.rsa.PrivateKey;
  privateKeyPem: string;
} {
  // Node generates the key natively (forge's pure-JS RSA generation takes seconds); forge signs.
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const privateKeyPem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
  return {
    publicKey: forge.pki.publicKeyFromPem(publicKey.export({ type: "spki", format: "pem" }).toString()),
    privateKey: forge.pki.privateKeyFromPem(privateKeyPem),
    privateKeyPem,
  };
}

function newSerial(): string {
  const bytes = randomBytes(16);
  // Positive and without a leading zero byte, so every tool prints it the same way.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x10;
  return bytes.toString("hex").toUpperCase();
}

function createAuthority(): Authority {
  const keys = newKeyPair();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = keys.publicKey;
  certificate.serialNumber = newSerial();
  certificate.validity.notBefore = new Date(Date.now() - DAY_MS);
  certificate.validity.notAfter = new Date(Date.now() + 20 * 365 * DAY_MS);
  const subject = [
    { name: "commonName", value: "SlapOS Master CA" },
    { name: "organizationName", value: "pulumi-slapos" },
  ];
  certificate.setSubject(subject);
  certificate.setIssuer(subject);
  certificate.setExtensions([
    { name: "basicConstraints", cA: true, critical: true },
    { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
    { name: "subjectKeyIdentifier" },
  ]);
  certificate.sign(keys.privateKey, forge.md.sha256.create());
  return { certificatePem: forge.pki.certificateToPem(certificate), privateKeyPem: keys.privateKeyPem };
}

interface IssueOptions {
  commonName: string;
  organizationalUnit: string;
  days: number;
  /** For the master's own TLS certificate: host names and IP addresses it answers on. */
  serverNames?: string[];
}

function issue(authority: Authority, options: IssueOptions): IssuedCertificate {
  const caCertificate = forge.pki.certificateFromPem(authority.certificatePem);
  const caKey = forge.pki.privateKeyFromPem(authority.privateKeyPem);
  const keys = newKeyPair();
  const certificate = forge.pki.createCertificate();
  certificate.publicKey = keys.publicKey;
  certificate.serialNumber = newSerial();
  certificate.validity.notBefore = new Date(Date.now() - 60_000);
  const expiresAt = new Date(Date.now() + options.days * DAY_MS);
  certificate.validity.notAfter = expiresAt;
  certificate.setSubject([
    { name: "commonName", value: options.commonName },
    { name: "organizationalUnitName", value: options.organizationalUnit },
  ]);
  certificate.setIssuer(caCertificate.subject.attributes);
  const extensions: object[] = [
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", clientAuth: !options.serverNames, serverAuth: Boolean(options.serverNames) },
  ];
  if (options.serverNames) {
    extensions.push({
      name: "subjectAltName",
      altNames: options.serverNames.map((name) =>
        isIP(name) ? { type: 7, ip: name } : { type: 2, value: name },
      ),
    });
  }
  certificate.setExtensions(extensions);
  certificate.sign(caKey, forge.md.sha256.create());
  return {
    serial: certificate.serialNumber.toUpperCase(),
    certificatePem: forge.pki.certificateToPem(certificate),
    privateKeyPem: keys.privateKeyPem,
    expiresAt,
  };
}

/**
 * How long client certificates last. Persons and computers renew theirs before the end
 * (`POST /api/v1/certificates/renew`; nodes do it on their own); an instance's lasts as long as
 * any instance is expected to, and dies with the instance.
 */
export const CLIENT_CERTIFICATE_DAYS: Record<IdentityKind, number> = {
  person: 825,
  computer: 825,
  instance: 3650,
};

/**
 * A client certificate for a person, a computer or a software instance. `days` shortens it
 * (tests of renewal use certificates about to expire); it defaults to the kind's lifetime.
 */
export function issueClientCertificate(
  authority: Authority,
  kind: IdentityKind,
  subjectId: string,
  days: number = CLIENT_CERTIFICATE_DAYS[kind],
): IssuedCertificate {
  if (!(days > 0)) throw new Error(`a certificate must last a positive number of days, not ${days}`);
  return issue(authority, { commonName: subjectId, organizationalUnit: kind, days });
}

/** The master's TLS server certificate for the names it is reached by. */
export function issueServerCertificate(authority: Authority, serverNames: string[]): IssuedCertificate {
  return issue(authority, {
    commonName: serverNames[0] ?? "localhost",
    organizationalUnit: "master",
    days: 365,
    serverNames,
  });
}
