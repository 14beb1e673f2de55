import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, type ClientChannel, type ConnectConfig } from "ssh2";

/** Where a host is and how we prove who we are to it, and who it must be to us. */
export interface SshTarget {
  host: string;
  port?: number;
  /** root, or a user with password-less sudo. */
  user: string;
  /** An OpenSSH or PEM private key; without it, the agent at `agent` (or $SSH_AUTH_SOCK). */
  privateKey?: string;
  agent?: string;
  /**
   * The host key's `SHA256:...` fingerprint (as `ssh-keygen -lf` prints it). Any other key aborts
   * the connection before anything is sent.
   */
  hostKey?: string;
  /** Without `hostKey`, accept whatever key the host shows (and report it). Never the default. */
  trustOnFirstUse?: boolean;
  connectTimeoutMs?: number;
  /** Dial attempts when the host refuses, times out or is unreachable (sshd restarting, host booting). */
  connectAttempts?: number;
}

export interface RemoteResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Run as root through `sudo -n` when the user is not root. */
  sudo?: boolean;
  /** Written to the command's standard input. */
  input?: string | Buffer;
  /** Strings masked as `***` wherever the command log shows them (tokens, keys). */
  secrets?: string[];
  timeoutMs?: number;
}

/** Every command sent, as the log shows it (secrets masked), with how it ended. */
export interface CommandRecord {
  command: string;
  exitCode: number;
  milliseconds: number;
}

/** The host did not answer (refused, timed out, no route) on any attempt: it may be gone. */
export class UnreachableHostError extends Error {
  override name = "UnreachableHostError";
}

export class HostKeyMismatchError extends Error {
  constructor(
    readonly host: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `${host} presented host key ${actual}, but ${expected} was expected: nothing was sent. If the host was reinstalled, check its key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it) and pin the new one`,
    );
    this.name = "HostKeyMismatchError";
  }
}

export function sha256Fingerprint(publicKeyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(publicKeyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** Quotes a string for a POSIX shell. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

function mask(text: string, secrets: string[]): string {
  return secrets
    .filter((secret) => secret.length > 0)
    .reduce((masked, secret) => masked.replaceAll(secret, "***"), text);
}

const DIAL_ERRORS = new Set(["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ECONNRESET"]);

/** One SSH connection to a host, on which the bootstrapper runs its commands. */
export class RemoteHost {
  readonly log: CommandRecord[] = [];

  private constructor(
    private readonly client: Client,
    readonly target: SshTarget,
    /** The fingerprint of the key the host presented. */
    readonly hostKey: string,
  ) {}

  get name(): string {
    return `${this.target.user}@${this.target.host}:${this.target.port ?? 22}`;
  }

  /** Connects, retrying dial errors with back-off; a host key mismatch is never retried. */
  static async connect(target: SshTarget): Promise<RemoteHost> {
    if (!target.hostKey && !target.trustOnFirstUse) {
      throw new Error(
        `no host key pinned for ${target.host}: give its SHA256 fingerprint (ssh-keygen -lf on the host), or explicitly trust it on first use`,
      );
    }
    const attempts = target.connectAttempts ?? 5;
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await RemoteHost.dial(target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? "";
        const retriable = DIAL_ERRORS.has(code) || (error as { level?: string }).level === "client-timeout";
        if (!retriable || attempt >= attempts) {
          if (error instanceof HostKeyMismatchError) throw error;
          const message = `cannot connect to ${target.user}@${target.host}:${target.port ?? 22} (attempt ${attempt} of ${attempts}): ${(error as Error).message}`;
          throw retriable ? new UnreachableHostError(message) : new Error(message);
        }
        await sleep(Math.min(500 * 2 ** (attempt - 1), 5_000));
      }
    }
  }

  private static dial(target: SshTarget): Promise<RemoteHost> {
    return new Promise((resolve, reject) => {
      const client = new Client();
      let presented = "";
      const config: ConnectConfig = {
        host: target.host,
        port: target.port ?? 22,
        username: target.user,
        readyTimeout: target.connectTimeoutMs ?? 20_000,
        hostVerifier: (key: Buffer) => {
          presented = sha256Fingerprint(key);
          return !target.hostKey || presented === target.hostKey;
        },
        ...(target.privateKey
          ? { privateKey: target.privateKey }
          : { agent: target.agent ?? process.env.SSH_AUTH_SOCK }),
      };
      client
        .once("ready", () => resolve(new RemoteHost(client, target, presented)))
        .once("error", (error) => {
          client.end();
          if (target.hostKey && presented && presented !== target.hostKey) {
            reject(new HostKeyMismatchError(target.host, target.hostKey, presented));
          } else {
            reject(error);
          }
        })
        .connect(config);
    });
  }

  /** Runs a command (through `sh -c`), as root with `sudo` when asked, and records it. */
  async run(command: string, options: RunOptions = {}): Promise<RemoteResult> {
    const asRoot = options.sudo && this.target.user !== "root";
    const line = asRoot ? `sudo -n sh -c ${shellQuote(command)}` : command;
    const started = Date.now();
    const result = await this.exec(line, options);
    this.log.push({
      command: mask(command, options.secrets ?? []),
      exitCode: result.exitCode,
      milliseconds: Date.now() - started,
    });
    return result;
  }

  /** Like run, but fails unless the command exits 0, with its error output. */
  async runOrThrow(command: string, options: RunOptions = {}): Promise<string> {
    const result = await this.run(command, options);
    if (result.exitCode !== 0) {
      const shown = mask(command, options.secrets ?? []);
      const output = mask((result.stderr || result.stdout).trim(), options.secrets ?? []);
      throw new Error(`${this.name}: '${shown}' failed (exit ${result.exitCode}): ${output.slice(-2_000)}`);
    }
    return result.stdout;
  }

  /** Writes a file atomically (temporary file, then rename), as root when asked. */
  async upload(
    path: string,
    content: string | Buffer,
    mode: number,
    options: { sudo?: boolean; secret?: boolean } = {},
  ): Promise<void> {
    const temporary = `${path}.upload-${process.pid}-${Date.now()}`;
    const quoted = shellQuote(path);
    await this.runOrThrow(
      `umask 077 && mkdir -p "$(dirname ${quoted})" && cat > ${shellQuote(temporary)} && chmod ${mode.toString(8)} ${shellQuote(temporary)} && mv -f ${shellQuote(temporary)} ${quoted}`,
      { sudo: options.sudo, input: content, secrets: options.secret ? [content.toString()] : [] },
    );
  }

  private exec(command: string, options: RunOptions): Promise<RemoteResult> {
    const timeoutMs = options.timeoutMs ?? 120_000;
    return new Promise((resolve, reject) => {
      this.client.exec(command, (error, stream: ClientChannel) => {
        if (error) {
          reject(new Error(`${this.name}: cannot start a command: ${error.message}`));
          return;
        }
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        const timer = setTimeout(() => {
          stream.close();
          reject(new Error(`${this.name}: a command did not finish within ${timeoutMs / 1000} s`));
        }, timeoutMs);
        stream.on("data", (chunk: Buffer) => stdout.push(chunk));
        stream.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
        stream.on("close", (exitCode: number | null, signal?: string) => {
          clearTimeout(timer);
          resolve({
            exitCode: exitCode ?? (signal ? 128 : -1),
            stdout: Buffer.concat(stdout).toString("utf8"),
            stderr: Buffer.concat(stderr).toString("utf8"),
          });
        });
        stream.end(options.input ?? "");
      });
    });
  }

  close(): void {
    this.client.end();
  }
}
