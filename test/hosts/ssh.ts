import { createHash } from "node:crypto";
import { Client } from "ssh2";

export interface SshTarget {
  host: string;
  port?: number;
  username: string;
  privateKey: string;
  /** `SHA256:...` as printed by `ssh-keygen -lf`; the connection is refused on any other key. */
  hostKeyFingerprint: string;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function sha256Fingerprint(publicKeyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(publicKeyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** Runs one command over a fresh SSH connection with a pinned host key. */
export function sshExec(target: SshTarget, command: string, timeoutMs = 30_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let seenFingerprint = "";
    const timer = setTimeout(() => {
      client.end();
      reject(new Error(`ssh ${target.username}@${target.host}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      client.end();
      const mismatch =
        seenFingerprint && seenFingerprint !== target.hostKeyFingerprint
          ? ` (host key ${seenFingerprint}, expected ${target.hostKeyFingerprint})`
          : "";
      reject(new Error(`ssh ${target.username}@${target.host}: ${error.message}${mismatch}`));
    };
    client
      .on("ready", () => {
        client.exec(command, (error, stream) => {
          if (error) return fail(error);
          let stdout = "";
          let stderr = "";
          stream.on("data", (chunk: Buffer) => {
            stdout += chunk.toString();
          });
          stream.stderr.on("data", (chunk: Buffer) => {
            stderr += chunk.toString();
          });
          stream.on("close", (exitCode: number | null) => {
            clearTimeout(timer);
            client.end();
            resolve({ exitCode: exitCode ?? -1, stdout, stderr });
          });
        });
      })
      .on("error", fail)
      .connect({
        host: target.host,
        port: target.port ?? 22,
        username: target.username,
        privateKey: target.privateKey,
        readyTimeout: timeoutMs,
        hostVerifier: (key: Buffer) => {
          seenFingerprint = sha256Fingerprint(key);
          return seenFingerprint === target.hostKeyFingerprint;
        },
      });
  });
}
