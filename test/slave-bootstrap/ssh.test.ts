import { afterAll, beforeAll, expect, it } from "vitest";
import { HostKeyMismatchError, RemoteHost, type SshTarget } from "../../slave-bootstrap/ssh.js";
import { SUDO_USER, type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { describeWith } from "../support/requirements.js";

describeWith(testHostRequirements, "the bootstrapper's SSH connection to a real sshd", () => {
  let network: TestNetwork;
  let host: TestHost;
  const target = (overrides: Partial<SshTarget> = {}): SshTarget => ({
    host: host.ipv4,
    user: "root",
    privateKey: host.privateKey,
    hostKey: host.hostKeyFingerprint,
    ...overrides,
  });

  beforeAll(async () => {
    network = await TestNetwork.create();
    host = await network.addHost();
  }, 60_000);
  afterAll(async () => {
    await network?.destroy();
  });

  it("runs commands as root, and as root through sudo for a sudo user", async () => {
    const root = await RemoteHost.connect(target());
    expect((await root.runOrThrow("id -u")).trim()).toBe("0");
    expect(root.hostKey).toBe(host.hostKeyFingerprint);
    root.close();
    const admin = await RemoteHost.connect(target({ user: SUDO_USER }));
    expect((await admin.runOrThrow("id -un")).trim()).toBe(SUDO_USER);
    expect((await admin.runOrThrow('id -u; echo "$0"', { sudo: true })).trim().split("\n")[0]).toBe("0");
    expect(admin.log.map((record) => [record.command, record.exitCode])).toEqual([
      ["id -un", 0],
      ['id -u; echo "$0"', 0],
    ]);
    admin.close();
  });

  it("refuses a host whose key is not the pinned one, naming both keys", async () => {
    const wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const attempt = RemoteHost.connect(target({ hostKey: wrong }));
    await expect(attempt).rejects.toBeInstanceOf(HostKeyMismatchError);
    await expect(RemoteHost.connect(target({ hostKey: wrong }))).rejects.toThrow(
      `presented host key ${host.hostKeyFingerprint}, but ${wrong} was expected`,
    );
  });

  it("trusts an unknown key only when asked to, and reports it", async () => {
    await expect(RemoteHost.connect(target({ hostKey: undefined }))).rejects.toThrow("no host key pinned");
    const trusted = await RemoteHost.connect(target({ hostKey: undefined, trustOnFirstUse: true }));
    expect(trusted.hostKey).toBe(host.hostKeyFingerprint);
    trusted.close();
  });

  it("retries a refused connection, then says how many attempts failed", async () => {
    await expect(RemoteHost.connect(target({ port: 2222, connectAttempts: 3 }))).rejects.toThrow(
      /cannot connect to root@.*:2222 \(attempt 3 of 3\): .*ECONNREFUSED/,
    );
  });

  it("uploads files atomically with their mode, and masks secrets in the command log", async () => {
    const remote = await RemoteHost.connect(target({ user: SUDO_USER }));
    await remote.upload("/etc/opt/slapos/token", "s3cret-token\n", 0o600, { sudo: true, secret: true });
    expect(await host.execOrThrow("stat -c '%a %U' /etc/opt/slapos/token; cat /etc/opt/slapos/token")).toBe(
      "600 root\ns3cret-token",
    );
    await remote.runOrThrow("echo s3cret-token >/dev/null", { secrets: ["s3cret-token"] });
    expect(JSON.stringify(remote.log)).not.toContain("s3cret-token");
    expect(remote.log.at(-1)?.command).toBe("echo *** >/dev/null");
    const failure = remote.runOrThrow("echo s3cret-token >&2; exit 3", { secrets: ["s3cret-token"] });
    await expect(failure).rejects.toThrow("'echo *** >&2; exit 3' failed (exit 3): ***");
    remote.close();
  });

  it("gives up on a command that does not finish in time", async () => {
    const remote = await RemoteHost.connect(target());
    await expect(remote.run("sleep 10", { timeoutMs: 500 })).rejects.toThrow("did not finish within 0.5 s");
    remote.close();
  });
});
