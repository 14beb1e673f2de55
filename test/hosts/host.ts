import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import type { TestNetwork } from "./network.js";
import { RUN_DIR, STATE_DIR } from "./paths.js";
import { type CommandResult, type SshTarget, sshExec } from "./ssh.js";
import { run } from "./system.js";

/** Directories each host sees as its own copy-on-write copy of this machine's. */
const COPIED_DIRS = ["etc", "var/lib"];
/**
 * Directories each host starts with empty, as on a freshly installed server. var/tmp comes last:
 * the host's own directories live under this machine's /var/tmp, which that mount hides.
 */
const FRESH_DIRS = ["srv", "opt", "root", "home", "tmp", "var/log", "run", "var/tmp"];

/** This repository (the nearest directory with a package.json above this file, built or not). */
function repositoryRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, "package.json")) && dirname(directory) !== directory) {
    directory = dirname(directory);
  }
  return directory;
}

/**
 * Every host sees this repository read-only at its own path, wherever the checkout lives (CI may
 * put it under /tmp, which hosts see fresh): tests run the built code and example releases there.
 */
const REPOSITORY = repositoryRoot();

/** Commands that mount this machine's cgroup hierarchies (v1 controllers, v2) the same way. */
async function cgroupMounts(): Promise<string[]> {
  const mounts = (await readFile("/proc/self/mounts", "utf8")).split("\n").map((line) => line.split(" "));
  const commands: string[] = [];
  const root = mounts.find(([, target, type]) => target === "/sys/fs/cgroup" && type !== "cgroup2");
  if (root) commands.push("mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup");
  for (const [, target, type, options] of mounts) {
    if (!target?.startsWith("/sys/fs/cgroup") || (type !== "cgroup" && type !== "cgroup2")) continue;
    const controllers = (options ?? "")
      .split(",")
      .filter((option) => !["rw", "ro", "relatime", "nosuid", "nodev", "noexec"].includes(option));
    const flags = type === "cgroup" ? `-o ${controllers.join(",")}` : "";
    commands.push(`mkdir -p ${target} && mount -t ${type} ${flags} ${type} ${target}`);
  }
  return commands;
}

export interface HostOptions {
  /**
   * Directories of this machine the host sees read-only at the same path, even under its fresh
   * directories: parts a real server would have installed itself (e.g. the node's Python environment).
   */
  sharedReadOnly?: string[];
}

/** The unprivileged account with password-less sudo that every host has. */
export const SUDO_USER = "slapadmin";

/**
 * One isolated host: its own network namespace (a veth on the network's bridge, IPv4 and IPv6),
 * its own mount and UTS namespaces (copies of /etc and /var/lib, empty /srv, /opt, /home...), and
 * a real sshd accepting a generated key for root and for a sudo user.
 */
export class TestHost {
  readonly name: string;
  readonly ipv4: string;
  readonly ipv6: string;
  /** OpenSSH private key accepted for root and for SUDO_USER. */
  privateKey = "";
  private publicKey = "";
  /** `SHA256:...` of this host's sshd key. */
  hostKeyFingerprint = "";

  private constructor(
    readonly network: TestNetwork,
    readonly index: number,
  ) {
    this.name = `slap${network.slot}h${index}`;
    this.ipv4 = `${network.ipv4Prefix}.${10 + index}`;
    this.ipv6 = `${network.ipv6Prefix}:${(10 + index).toString(16)}`;
  }

  /** Where this host's own directories live on this machine. */
  get stateDir(): string {
    return `${STATE_DIR}/${this.network.slot}/h${this.index}`;
  }
  private get mountNamespace(): string {
    return `${RUN_DIR}/${this.network.slot}-${this.index}.mnt`;
  }
  private get utsNamespace(): string {
    return `${RUN_DIR}/${this.network.slot}-${this.index}.uts`;
  }

  static async create(network: TestNetwork, index: number, options: HostOptions = {}): Promise<TestHost> {
    const host = new TestHost(network, index);
    await host.createClientKey();
    await host.createNetwork();
    await host.createFilesystem([REPOSITORY, ...(options.sharedReadOnly ?? [])]);
    await host.startSshd();
    return host;
  }

  /** An SSH target for root or the sudo user, with the host key pinned. */
  sshTarget(username: "root" | typeof SUDO_USER = "root"): SshTarget {
    return {
      host: this.ipv4,
      username,
      privateKey: this.privateKey,
      hostKeyFingerprint: this.hostKeyFingerprint,
    };
  }

  ssh(command: string, username: "root" | typeof SUDO_USER = "root"): Promise<CommandResult> {
    return sshExec(this.sshTarget(username), command);
  }

  /** Runs a bash command as root inside the host directly (no SSH): for setup and inspection. */
  async exec(script: string): Promise<CommandResult> {
    const result = await execa(
      "nsenter",
      [
        `--net=/run/netns/${this.name}`,
        `--mount=${this.mountNamespace}`,
        `--uts=${this.utsNamespace}`,
        "--",
        "bash",
        "-c",
        script,
      ],
      {
        reject: false,
        env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
        extendEnv: false,
      },
    );
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr };
  }

  /** Like exec, but fails unless the command exits 0. */
  async execOrThrow(script: string): Promise<string> {
    const result = await this.exec(script);
    if (result.exitCode !== 0) {
      throw new Error(
        `${this.name}: '${script}' failed (${result.exitCode}): ${result.stderr || result.stdout}`,
      );
    }
    return result.stdout;
  }

  /** The key root and the sudo user log in with, made by OpenSSH's own ssh-keygen. */
  private async createClientKey(): Promise<void> {
    const directory = await mkdtemp(join(tmpdir(), "test-host-key-"));
    try {
      await run("ssh-keygen", [
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        `test@${this.name}`,
        "-f",
        join(directory, "key"),
      ]);
      this.privateKey = await readFile(join(directory, "key"), "utf8");
      this.publicKey = (await readFile(join(directory, "key.pub"), "utf8")).trim();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  }

  private async createNetwork(): Promise<void> {
    const veth = `sv${this.network.slot}h${this.index}`;
    const inHost = (...args: string[]) => run("ip", ["-n", this.name, ...args]);
    await run("ip", ["netns", "add", this.name]);
    await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", this.name]);
    await run("ip", ["link", "set", veth, "master", this.network.bridge, "up"]);
    await inHost("link", "set", "lo", "up");
    await inHost("addr", "add", `${this.ipv4}/24`, "dev", "eth0");
    await inHost("-6", "addr", "add", `${this.ipv6}/64`, "dev", "eth0", "nodad");
    await inHost("link", "set", "eth0", "up");
    await inHost("route", "add", "default", "via", this.network.gatewayIpv4);
    await inHost("-6", "route", "add", "default", "via", this.network.gatewayIpv6);
  }

  private async createFilesystem(shared: string[]): Promise<void> {
    const dirs = [
      ...shared.map((_, index) => `shared/${index}`),
      ...COPIED_DIRS.flatMap((dir) => [`upper/${dir}`, `work/${dir}`]),
      ...FRESH_DIRS.map((dir) => `fresh/${dir}`),
    ];
    for (const dir of dirs) await mkdir(`${this.stateDir}/${dir}`, { recursive: true });
    await chmod(`${this.stateDir}/fresh/tmp`, 0o1777);
    await chmod(`${this.stateDir}/fresh/var/tmp`, 0o1777);
    await chmod(`${this.stateDir}/fresh/root`, 0o700);
    const mounts = [
      ...COPIED_DIRS.map(
        (dir) =>
          `mount -t overlay overlay -o lowerdir=/${dir},upperdir=${this.stateDir}/upper/${dir},workdir=${this.stateDir}/work/${dir} /${dir}`,
      ),
      // Staged before the fresh directories hide the originals, placed after, before var/tmp
      // (which holds the staging directory) is hidden in turn.
      ...shared.map((path, index) => `mount --bind '${path}' ${this.stateDir}/shared/${index}`),
      ...FRESH_DIRS.slice(0, -1).map((dir) => `mount --bind ${this.stateDir}/fresh/${dir} /${dir}`),
      ...shared.flatMap((path, index) => [
        `mkdir -p '${path}'`,
        `mount --bind ${this.stateDir}/shared/${index} '${path}'`,
        `mount -o remount,bind,ro '${path}'`,
      ]),
      ...FRESH_DIRS.slice(-1).map((dir) => `mount --bind ${this.stateDir}/fresh/${dir} /${dir}`),
      // sysfs shows the network devices of the namespace that mounts it: this host's.
      "mount -t sysfs sysfs /sys",
      // The fresh sysfs hides the cgroup hierarchies: mounted again, as a server boots with them
      // (the same hierarchies, shared with this machine: each node names its own cgroups).
      ...(await cgroupMounts()),
      `hostname ${this.name}`,
      // As on an installed server: the host's own name resolves without DNS (sudo looks it up).
      `echo '127.0.1.1 ${this.name}' >> /etc/hosts`,
      // This machine's DNS server is out of the host's reach: without a nameserver line, lookups
      // go to 127.0.0.1 and fail at once instead of timing out (reverse lookups of Python's
      // http.server would otherwise stall for 10 s).
      "rm -f /etc/resolv.conf && echo '# test host: no DNS server' > /etc/resolv.conf",
    ];
    await writeFile(this.mountNamespace, "");
    await writeFile(this.utsNamespace, "");
    await run("unshare", [
      `--mount=${this.mountNamespace}`,
      `--uts=${this.utsNamespace}`,
      "--propagation",
      "private",
      "nsenter",
      `--net=/run/netns/${this.name}`,
      "--",
      "sh",
      "-ec",
      mounts.join("\n"),
    ]);
  }

  private async startSshd(): Promise<void> {
    const config = [
      "Port 22",
      "HostKey /etc/ssh/ssh_host_ed25519_key",
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM yes",
      "PidFile /run/sshd.pid",
      "Subsystem sftp /usr/lib/openssh/sftp-server",
      "",
    ].join("\n");
    const authorizedKey = `${this.publicKey}\n`;
    await this.execOrThrow(
      [
        "set -e",
        "rm -f /etc/ssh/ssh_host_*",
        "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key",
        `cat > /etc/ssh/sshd_config <<'EOF'\n${config}EOF`,
        "mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh",
        `printf '%s' '${authorizedKey}' > /root/.ssh/authorized_keys`,
        `useradd --create-home --shell /bin/bash --password '*' ${SUDO_USER}`,
        `mkdir -p /home/${SUDO_USER}/.ssh && printf '%s' '${authorizedKey}' > /home/${SUDO_USER}/.ssh/authorized_keys`,
        `chown -R ${SUDO_USER}: /home/${SUDO_USER}/.ssh && chmod 700 /home/${SUDO_USER}/.ssh`,
        `echo '${SUDO_USER} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/${SUDO_USER} && chmod 440 /etc/sudoers.d/${SUDO_USER}`,
        "/usr/sbin/sshd -E /var/log/sshd.log",
      ].join("\n"),
    );
    const fingerprint = await this.execOrThrow("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub");
    this.hostKeyFingerprint = fingerprint.split(" ")[1] ?? "";
    await this.waitForSshd();
  }

  private async waitForSshd(): Promise<void> {
    const pidFile = `${this.stateDir}/fresh/run/sshd.pid`;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const pid = await readFile(pidFile, "utf8").catch(() => "");
      if (pid.trim()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const log = await readFile(`${this.stateDir}/fresh/var/log/sshd.log`, "utf8").catch(() => "(no log)");
    throw new Error(`${this.name}: sshd did not start within 10 s: ${log}`);
  }
}
