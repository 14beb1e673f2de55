import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWith } from "../support/requirements.js";
import { SUDO_USER, sshExec, type TestHost, TestNetwork, testHostRequirements } from "./index.js";

describeWith(testHostRequirements, "test hosts", () => {
  let network: TestNetwork;
  let one: TestHost;
  let two: TestHost;

  beforeAll(async () => {
    network = await TestNetwork.create();
    one = await network.addHost();
    two = await network.addHost();
  }, 60_000);

  afterAll(async () => {
    await network?.destroy();
  }, 60_000);

  it("accepts root and the sudo user over SSH with the generated key", async () => {
    for (const host of [one, two]) {
      const asRoot = await host.ssh("id -un; hostname");
      expect(asRoot).toMatchObject({ exitCode: 0, stdout: `root\n${host.name}\n` });
      const asUser = await host.ssh("id -un; sudo -n id -un", SUDO_USER);
      expect(asUser).toMatchObject({ exitCode: 0, stdout: `${SUDO_USER}\nroot\n` });
    }
  });

  it("refuses a connection whose host key does not match the pinned one", async () => {
    const wrongKey = { ...one.sshTarget(), hostKeyFingerprint: two.hostKeyFingerprint };
    await expect(sshExec(wrongKey, "true")).rejects.toThrow(/host key SHA256:.*expected SHA256:/);
  });

  it("keeps users and files of one host invisible to the other and to this machine", async () => {
    expect(
      (await one.ssh("useradd --system isolated-user && touch /srv/only-on-one && id -u isolated-user"))
        .exitCode,
    ).toBe(0);

    expect((await one.ssh("id isolated-user && test -f /srv/only-on-one")).exitCode).toBe(0);
    expect((await two.ssh("id isolated-user")).exitCode).not.toBe(0);
    expect((await two.ssh("test -e /srv/only-on-one")).exitCode).not.toBe(0);
    expect(existsSync("/srv/only-on-one")).toBe(false);
    expect(await readFile("/etc/passwd", "utf8")).not.toContain("isolated-user");
  });

  it("lets hosts reach each other over IPv4 and IPv6", async () => {
    const ipv4 = await one.ssh(`ping -c 1 -W 2 ${two.ipv4}`);
    expect(ipv4.exitCode, ipv4.stdout + ipv4.stderr).toBe(0);
    const ipv6 = await one.ssh(`ping -6 -c 1 -W 2 ${two.ipv6}`);
    expect(ipv6.exitCode, ipv6.stdout + ipv6.stderr).toBe(0);
    // And SSH itself crosses between hosts, over IPv6.
    const sshd = await two.exec(`exec 3<>/dev/tcp/${one.ipv6}/22 && head -c 8 <&3`);
    expect(sshd.stdout).toBe("SSH-2.0-");
  });

  it("tears down every process, namespace, link and file it created", async () => {
    const extra = await TestNetwork.create();
    const host = await extra.addHost();
    const pidText = await host.execOrThrow("cat /run/sshd.pid");
    const sshdPid = Number.parseInt(pidText, 10);
    expect(sshdPid).toBeGreaterThan(1);
    await extra.destroy();

    expect((await execa("ip", ["netns", "list"])).stdout).not.toContain(host.name);
    expect((await execa("ip", ["link", "show", extra.bridge], { reject: false })).exitCode).not.toBe(0);
    expect(existsSync(host.stateDir)).toBe(false);
    expect(existsSync(`/proc/${sshdPid}`) && !(await isZombie(sshdPid))).toBe(false);
  }, 60_000);
});

async function isZombie(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return /^State:\s+Z/m.test(status);
}
