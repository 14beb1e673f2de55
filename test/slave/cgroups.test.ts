import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ConfinedPartition, PartitionCgroups } from "../../slave/isolation/cgroups.js";
import { limitWrites } from "../../slave/isolation/limits.js";
import { parseCgroupMounts } from "../../slave/isolation/mountinfo.js";
import { ownMountNamespace, processesOf } from "../../slave/isolation/proc-sweep.js";
import { UsageMeter } from "../../slave/report/index.js";
import { SYSTEM_PATH } from "../../slave/run-as.js";
import { describeWith, type Requirement, requires } from "../support/requirements.js";
import { createThrowawayUser, removeThrowawayUser } from "../support/throwaway-user.js";

const MiB = 1024 * 1024;

describe("cgroup mounts, as /proc/self/mountinfo lists them", () => {
  it("finds each v1 controller's hierarchy and the unified one (hybrid layout)", () => {
    const mounts = parseCgroupMounts(
      [
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct",
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
        "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer",
        "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids",
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd",
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
        "90 41 0:38 / /mnt/other\\040place rw,relatime - cgroup cgroup rw,memory",
      ].join("\n"),
    );
    expect(mounts.unified).toEqual(["/sys/fs/cgroup/unified"]);
    expect(mounts.v1.get("cpu")).toBe("/sys/fs/cgroup/cpu,cpuacct");
    expect(mounts.v1.get("cpuacct")).toBe("/sys/fs/cgroup/cpu,cpuacct");
    expect(mounts.v1.get("memory")).toBe("/sys/fs/cgroup/memory");
    expect(mounts.v1.get("pids")).toBe("/sys/fs/cgroup/pids");
    expect(mounts.v1.get("freezer")).toBe("/sys/fs/cgroup/freezer");
  });

  it("finds a unified-only node and decodes escaped mount points", () => {
    const mounts = parseCgroupMounts(
      "25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n" +
        "26 1 0:23 / /srv/my\\040cgroups rw - cgroup2 none rw\n",
    );
    expect(mounts.unified).toEqual(["/sys/fs/cgroup", "/srv/my cgroups"]);
    expect(mounts.v1.size).toBe(0);
  });
});

describe("the files that hold a partition's limits", () => {
  it("maps the CPU weight to v1 shares and writes 'max' / -1 for no limit", () => {
    const v1 = limitWrites(1, { maxProcesses: null, maxMemoryBytes: null, cpuWeight: 250 });
    expect(v1.map(({ file, value }) => `${file}=${value}`)).toEqual([
      "pids.max=max",
      "memory.memsw.limit_in_bytes=-1",
      "memory.limit_in_bytes=-1",
      "memory.memsw.limit_in_bytes=-1",
      "cpu.shares=2560",
    ]);
    const v2 = limitWrites(2, { maxProcesses: 64, maxMemoryBytes: 128 * MiB, cpuWeight: null });
    expect(v2.map(({ file, value }) => `${file}=${value}`)).toEqual([
      "pids.max=64",
      `memory.max=${128 * MiB}`,
      "memory.swap.max=0",
      "cpu.weight=100",
    ]);
  });
});

/** pids and memory controllers this process can see, v2 or v1: what the limits below need. */
function cgroupControllers(why: string): Requirement {
  return {
    why: `cgroup pids and memory controllers mounted (v2 or v1): ${why}`,
    isMet: () => {
      const mounts = parseCgroupMounts(readFileSync("/proc/self/mountinfo", "utf8"));
      const unified = mounts.unified.some((mount) => {
        const controllers = existsSync(join(mount, "cgroup.controllers"))
          ? readFileSync(join(mount, "cgroup.controllers"), "utf8").split(/\s+/)
          : [];
        return controllers.includes("pids") && controllers.includes("memory");
      });
      return unified || (mounts.v1.has("pids") && mounts.v1.has("memory"));
    },
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

/** Polls until `condition` holds; a bound, never an assertion on time. */
async function waitFor(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt++) {
    if (await condition()) return;
    await sleep(50);
  }
  throw new Error(`gave up waiting for ${what}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "latin1"));
  } catch {
    return false;
  }
}

function uidOf(pid: number): number | undefined {
  try {
    return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "latin1"))?.[1]);
  } catch {
    return undefined;
  }
}

async function createUser(name: string): Promise<ConfinedPartition> {
  const { uid, gid } = await createThrowawayUser(name);
  return { reference: name, uid, gid };
}

const FORK_BOMB = `
import os
started = failed = 0
for _ in range(5000):
    try:
        pid = os.fork()
    except OSError:
        failed += 1
        continue
    if pid == 0:
        # Not holding the bomb's stdout: its output ends when the bomb does.
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.execv("/bin/sleep", ["sleep", "30"])
    started += 1
print(started, failed, flush=True)
`;

describeWith(
  [
    requires.root("creates users and cgroups, and moves processes into them"),
    requires.command("setpriv", "runs the partitions' processes as their users (util-linux)"),
    requires.command("useradd", "creates the partitions' users (passwd)"),
    requires.command("unshare", "starts a process of the same uid in another mount namespace (util-linux)"),
    requires.command("/usr/bin/python3", "plays the partitions' services, fork bomb and memory hog"),
    cgroupControllers("the process and memory limits are what is tested"),
  ],
  "partition cgroups on this machine: a partition is a prison",
  () => {
    const name = `slapos-test-${process.pid}`;
    const limits = { maxProcesses: 64, maxMemoryBytes: 128 * MiB, cpuWeight: 100 };
    const logger = pino({ level: "silent" });
    const started: ResultPromise[] = [];
    let cgroups: PartitionCgroups;
    let a: ConfinedPartition;
    let b: ConfinedPartition;
    let served: string;
    let port: number;
    let server: ResultPromise;

    function asUser(partition: ConfinedPartition, argv: string[]): string[] {
      return [
        "setpriv",
        `--reuid=${partition.uid}`,
        `--regid=${partition.gid}`,
        "--init-groups",
        "--",
        ...argv,
      ];
    }

    function start(argv: string[]): ResultPromise {
      const [file = "", ...args] = argv;
      const child = execa(file, args, {
        cwd: "/",
        env: { PATH: SYSTEM_PATH },
        extendEnv: false,
        reject: false,
      });
      started.push(child);
      return child;
    }

    /** Runs argv as the partition's user inside its cgroups, the way the agent does. */
    function run(partition: ConfinedPartition, argv: string[]): ResultPromise {
      return start(cgroups.wrap(partition, asUser(partition, argv)));
    }

    /** Runs argv as the partition's user outside its cgroups, like a process the agent did not start through wrap. */
    function runOutside(partition: ConfinedPartition, prefix: string[], argv: string[]): ResultPromise {
      return start([...prefix, ...asUser(partition, argv)]);
    }

    async function bAnswers(): Promise<boolean> {
      const response = await fetch(`http://127.0.0.1:${port}/`).catch(() => null);
      await response?.arrayBuffer();
      return response?.status === 200;
    }

    function processesOfA(): number[] {
      return processesOf(a.uid, ownMountNamespace());
    }

    beforeAll(async () => {
      a = await createUser(`slt${process.pid}a`);
      b = await createUser(`slt${process.pid}b`);
      cgroups = await PartitionCgroups.detect({ name, limits, logger });
      await cgroups.prepare(a);
      await cgroups.prepare(b);
      served = await mkdtemp(join(tmpdir(), "cgroups-test-"));
      await chmod(served, 0o755);
      port = await freePort();
      server = run(b, [
        "/usr/bin/python3",
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--directory",
        served,
        String(port),
      ]);
      await waitFor("partition B's web server", bAnswers);
    });

    afterAll(async () => {
      for (const child of started) {
        if (child.pid !== undefined && alive(child.pid)) process.kill(child.pid, "SIGKILL");
      }
      if (cgroups !== undefined) {
        for (const partition of [a, b]) if (partition !== undefined) await cgroups.killAll(partition);
        await cgroups.removeAll();
      }
      await Promise.all(started);
      // --force: a test host sharing this kernel may run a process under the same uid number.
      for (const user of [a, b]) if (user !== undefined) await removeThrowawayUser(user.reference);
      if (served !== undefined) await rm(served, { recursive: true, force: true });
    });

    it("shows each partition's limits and cgroup use in the usage report's log", async () => {
      const lines: string[] = [];
      const stateDirectory = await mkdtemp(join(tmpdir(), "cgroups-report-"));
      try {
        const meter = new UsageMeter({
          stateFile: join(stateDirectory, "usage-state.json"),
          alterNetwork: false,
          cgroups,
          logger: pino({ level: "info" }, { write: (line: string) => lines.push(line) }),
        });
        const partition = (user: ConfinedPartition) => ({
          reference: user.reference,
          index: 0,
          path: served,
          user: { name: user.reference, uid: user.uid, gid: user.gid },
          addresses: [],
          tap: null,
        });
        await meter.collect([partition(a), partition(b)]);
      } finally {
        await rm(stateDirectory, { recursive: true, force: true });
      }
      const logged = lines.map((line) => JSON.parse(line)).find((line) => line.partitions !== undefined);
      expect(logged.partitions[b.reference].limits).toEqual(limits);
      expect(logged.partitions[b.reference].processes).toBeGreaterThanOrEqual(1);
      expect(logged.partitions[b.reference].memoryBytes).toBeGreaterThan(0);
      expect(logged.partitions[a.reference]).toMatchObject({ limits, processes: 0 });
    });

    it("holds a fork bomb to the partition's process limit while the other partition keeps answering", async () => {
      const bomb = run(a, ["/usr/bin/python3", "-c", FORK_BOMB]);
      let running = true;
      bomb.finally(() => {
        running = false;
      });
      let most = 0;
      while (running) {
        most = Math.max(most, processesOfA().length, (await cgroups.usage(a.reference))?.processes ?? 0);
        expect(await bAnswers()).toBe(true);
      }
      const result = await bomb;
      const [forked = 0, failed = 0] = String(result.stdout).split(" ").map(Number);
      // The bomb itself and its children share the 64.
      expect(forked + 1).toBeLessThanOrEqual(64);
      expect(failed).toBeGreaterThan(5000 - 64);
      most = Math.max(most, processesOfA().length, (await cgroups.usage(a.reference))?.processes ?? 0);
      expect(most).toBeLessThanOrEqual(64);
      expect(processesOfA().length).toBe(forked);
      expect(await bAnswers()).toBe(true);
      await cgroups.killAll(a);
      expect(processesOfA()).toEqual([]);
      // Killed children are zombies until init reaps them, and hold their pids until then.
      await waitFor(
        "init to reap the bomb's children",
        async () => (await cgroups.usage(a.reference))?.processes === 0,
      );
    });

    it("kills a memory hog at the partition's memory limit while the other partition keeps answering", async () => {
      const hog = await run(a, [
        "/usr/bin/python3",
        "-c",
        "hog = b'\\x01' * (1 << 30)\nprint('allocated 1 GiB', flush=True)",
      ]);
      expect(hog.signal).toBe("SIGKILL");
      expect(String(hog.stdout)).not.toContain("allocated");
      expect(alive(server.pid ?? 0)).toBe(true);
      expect(await bAnswers()).toBe(true);
    });

    it("kills every process of a partition, detached or double-forked, and none of the other's", async () => {
      const leader = run(a, [
        "/bin/sh",
        "-c",
        "setsid sleep 600 & (sh -c 'sleep 600 & exit' &); nohup sleep 600 >/dev/null 2>&1 & exec sleep 600",
      ]);
      await waitFor("partition A's four sleeps", () => processesOfA().length >= 4);
      const before = processesOfA();
      await cgroups.killAll(a);
      expect(processesOfA()).toEqual([]);
      for (const pid of before) expect(alive(pid)).toBe(false);
      expect(await readFile(join("/proc", String(server.pid), "cmdline"), "utf8")).toContain("http.server");
      expect(await bAnswers()).toBe(true);
      expect((await leader).signal).toBe("SIGKILL");
    });

    it("kills the partition user's processes outside its cgroups in this mount namespace, never in another", async () => {
      const stray = runOutside(a, [], ["sleep", "600"]);
      const elsewhere = runOutside(
        a,
        ["unshare", "--mount", "--propagation", "private", "--"],
        ["sleep", "600"],
      );
      const [strayPid, elsewherePid] = [stray.pid ?? 0, elsewhere.pid ?? 0];
      await waitFor("both sleeps to run as partition A's user", () =>
        [strayPid, elsewherePid].every((pid) => uidOf(pid) === a.uid),
      );
      expect(readlinkSync(`/proc/${elsewherePid}/ns/mnt`)).not.toBe(ownMountNamespace());
      await cgroups.killAll(a);
      expect(alive(strayPid)).toBe(false);
      expect(alive(elsewherePid)).toBe(true);
      expect(uidOf(elsewherePid)).toBe(a.uid);
      process.kill(elsewherePid, "SIGKILL");
      expect((await elsewhere).signal).toBe("SIGKILL");
      expect((await stray).signal).toBe("SIGKILL");
    });

    it("removes a partition's cgroups once it is killed", async () => {
      await cgroups.remove(a.reference);
      expect(await cgroups.usage(a.reference)).toBeNull();
    });
  },
);
