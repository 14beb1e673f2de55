import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Where the computer's certificate and key live (`[slapos] cert_file`, `key_file`). */
export interface CredentialFiles {
  certFile: string;
  keyFile: string;
}

export interface Credentials {
  certificate: string;
  privateKey: string;
}

/** A new pair is written next to the live one under these names, then renamed over it. */
const pending = (path: string) => `${path}.renewed`;

/**
 * Replaces the certificate and key with a new pair so that the node ends up with one matching
 * pair whenever it stops: each file is written and synced beside the live one (the key 0600),
 * then the key and the certificate are renamed over the live ones. A stop between the two
 * renames leaves the new key with the old certificate, which `settleCredentialFiles` completes.
 */
export async function replaceCredentialFiles(
  files: CredentialFiles,
  credentials: Credentials,
): Promise<void> {
  if (!matches(credentials.certificate, credentials.privateKey)) {
    throw new Error("the new certificate does not belong to the new key; the current ones were kept");
  }
  await mkdir(dirname(files.keyFile), { recursive: true, mode: 0o755 });
  await mkdir(dirname(files.certFile), { recursive: true, mode: 0o755 });
  await writeSynced(pending(files.keyFile), credentials.privateKey, 0o600);
  await writeSynced(pending(files.certFile), credentials.certificate, 0o644);
  await rename(pending(files.keyFile), files.keyFile);
  await rename(pending(files.certFile), files.certFile);
  await syncDirectory(dirname(files.keyFile));
  if (dirname(files.certFile) !== dirname(files.keyFile)) await syncDirectory(dirname(files.certFile));
}

/**
 * Finishes or discards a replacement cut short by a stop, so that the live files are a matching
 * pair again: a complete new pair is moved in, a new certificate whose key is already in place
 * follows it, and anything else left over (a half-written file) is removed.
 */
export async function settleCredentialFiles(files: CredentialFiles): Promise<void> {
  const [newCertificate, newKey, liveKey] = await Promise.all([
    readIfPresent(pending(files.certFile)),
    readIfPresent(pending(files.keyFile)),
    readIfPresent(files.keyFile),
  ]);
  if (newCertificate === undefined && newKey === undefined) return;
  if (newCertificate !== undefined && newKey !== undefined && matches(newCertificate, newKey)) {
    await rename(pending(files.keyFile), files.keyFile);
    await rename(pending(files.certFile), files.certFile);
  } else if (
    newCertificate !== undefined &&
    newKey === undefined &&
    liveKey !== undefined &&
    matches(newCertificate, liveKey)
  ) {
    await rename(pending(files.certFile), files.certFile);
  } else {
    await rm(pending(files.certFile), { force: true });
    await rm(pending(files.keyFile), { force: true });
  }
}

function matches(certificate: string, privateKey: string): boolean {
  try {
    return new X509Certificate(certificate).checkPrivateKey(createPrivateKey(privateKey));
  } catch {
    return false;
  }
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

async function writeSynced(path: string, content: string, mode: number): Promise<void> {
  // A leftover from an earlier attempt may have another owner or mode: start from nothing.
  await rm(path, { force: true });
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(content);
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
