import { existsSync, readFileSync } from "node:fs";
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import fc from "fast-check";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SYSTEM_PATH } from "../../slave/run-as.js";
import { renderPartitionConfig } from "../../slave/supervisor/config.js";
import { type PartitionProcesses, type ProcessInfo, Supervisor } from "../../slave/supervisor/index.js";
import { scanPrograms } from "../../slave/supervisor/programs.js";
import {
  decodeMethodResponse,
  encodeMethodCall,
  postXmlRpc,
  XmlRpcError,
  XmlRpcFault,
  type XmlRpcParam,
  type XmlRpcValue,
} from "../../slave/supervisor/xmlrpc.js";
import { describeWith, requires } from "../support/requirements.js";

const venv = process.env.SLAPOS_VENV ?? "";
const logger = pino({ level: process.env.LOG_LEVEL ?? "silent" });

/** Python's own xmlrpc.client, the reference the codec must agree with. */
async function python(script: string, input: unknown): Promise<unknown> {
  const { stdout } = await execa(join(venv, "bin", "python"), ["-c", script], {
    input: JSON.stringify(input),
  });
  return JSON.parse(stdout);
}

const PYTHON_LOADS = `
import json, sys, xmlrpc.client
out = []
for document in json.load(sys.stdin):
    try:
        params, method = xmlrpc.client.loads(document)
        out.append({"method": method, "params": list(params)})
    except xmlrpc.client.Fault as fault:
        out.append({"fault": [fault.faultCode, fault.faultString]})
json.dump(out, sys.stdout)
`;

const PYTHON_DUMPS = `
import json, sys, xmlrpc.client
json.dump([xmlrpc.client.dumps((value,), methodresponse=True) for value in json.load(sys.stdin)], sys.stdout)
`;

/** Our decoding, in the shape PYTHON_LOADS prints. */
function decodedLikePython(xml: string): unknown {
  try {
    return { method: null, params: [decodeMethodResponse(xml)] };
  } catch (error) {
    if (error instanceof XmlRpcFault) return { fault: [error.code, error.faultString] };
    throw error;
  }
}

// Text XML can carry: no control characters but tab and newlines.
const xmlText = fc.string({
  unit: fc.oneof(
    fc.constantFrom("&", "<", ">", '"', "'", "\n", "\t", " ", "é", "😀", "]]>", "a", "Z", "0", ":"),
    fc.integer({ min: 0x20, max: 0xd7ff }).map((code) => String.fromCodePoint(code)),
  ),
});
const param: fc.Arbitrary<XmlRpcParam> = fc.letrec<{ value: XmlRpcParam }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    xmlText,
    fc.integer(),
    fc.boolean(),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(xmlText, tie("value"), { maxKeys: 4 }),
  ),
})).value;

describe("XML-RPC codec", () => {
  it("encodes calls with escaped text and refuses numbers <int> cannot carry", () => {
    expect(encodeMethodCall("supervisor.startProcessGroup", ["a<&>\r", 7, true, [], { k: ["x"] }])).toBe(
      '<?xml version="1.0"?>\n<methodCall><methodName>supervisor.startProcessGroup</methodName><params>' +
        "<param><value><string>a&lt;&amp;&gt;&#13;</string></value></param>" +
        "<param><value><int>7</int></value></param>" +
        "<param><value><boolean>1</boolean></value></param>" +
        "<param><value><array><data></data></array></value></param>" +
        "<param><value><struct><member><name>k</name><value><array><data><value><string>x</string></value></data></array></value></member></struct></value></param>" +
        "</params></methodCall>",
    );
    expect(() => encodeMethodCall("m", [1.5])).toThrow(/not a 32-bit integer/);
    expect(() => encodeMethodCall("m", [2 ** 31])).toThrow(/not a 32-bit integer/);
  });

  it("decodes every type, untyped values as strings, and member names as plain keys", () => {
    const answer = `<?xml version="1.0"?><methodResponse><params><param><value><struct>
      <member><name>__proto__</name><value><i4>-3</i4></value></member>
      <member><name>text</name><value> two words </value></member>
      <member><name>list</name><value><array><data>
        <value><boolean>0</boolean></value><value><double>2.5</double></value><value><nil/></value>
        <value><i8>9007199254740991</i8></value><value><string></string></value>
      </data></array></value></member>
    </struct></value></param></params></methodResponse>`;
    const value = decodeMethodResponse(answer) as Record<string, XmlRpcValue>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toBe(-3);
    expect(value.text).toBe(" two words ");
    expect(value.list).toEqual([false, 2.5, null, Number.MAX_SAFE_INTEGER, ""]);
  });

  it("turns faults into XmlRpcFault and bad answers into XmlRpcError", () => {
    const fault =
      "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>10</int></value></member>" +
      "<member><name>faultString</name><value><string>BAD_NAME: nope</string></value></member></struct></value></fault></methodResponse>";
    expect(() => decodeMethodResponse(fault)).toThrow(
      expect.objectContaining({ code: 10, faultString: "BAD_NAME: nope" }),
    );
    expect(() => decodeMethodResponse("<methodResponse><params>")).toThrow(XmlRpcError);
    expect(() => decodeMethodResponse("<methodCall/>")).toThrow(/not <methodResponse>/);
    expect(() =>
      decodeMethodResponse(
        "<methodResponse><params><param><value><int>1.5</int></value></param></params></methodResponse>",
      ),
    ).toThrow(/not an integer/);
    expect(() =>
      decodeMethodResponse(
        "<methodResponse><params><param><value><base64>AA==</base64></value></param></params></methodResponse>",
      ),
    ).toThrow(/<base64> is not supported/);
  });
});

describeWith(
  [requires.env("SLAPOS_VENV", "Python's xmlrpc.client as the reference codec")],
  "XML-RPC codec against Python",
  () => {
    it("Python reads our calls as we wrote them", async () => {
      const calls = fc.sample(fc.array(param, { maxLength: 4 }), 300);
      const decoded = (await python(
        PYTHON_LOADS,
        calls.map((params) => encodeMethodCall("supervisor.x", params)),
      )) as unknown[];
      expect(decoded).toEqual(calls.map((params) => ({ method: "supervisor.x", params })));
    });

    it("we read Python's answers as it wrote them", async () => {
      // Python writes \r raw, which every XML parser reads back as \n.
      const values = fc.sample(param, 300).filter((value) => !JSON.stringify(value).includes("\\r"));
      const answers = (await python(PYTHON_DUMPS, values)) as string[];
      expect(answers.map(decodeMethodResponse)).toEqual(values);
    });
  },
);

describe("partition programs and their configuration", () => {
  it("takes executables of etc/run then etc/service, sorted, links followed, and refuses unsafe names", async () => {
    const path = await mkdtemp(join(tmpdir(), "sv-programs-"));
    try {
      await mkdir(join(path, "etc", "run"), { recursive: true });
      await mkdir(join(path, "etc", "service", "a-directory"), { recursive: true });
      await mkdir(join(path, "bin"));
      await writeFile(join(path, "bin", "wrapper"), SLEEPER, { mode: 0o755 });
      await symlink(join(path, "bin", "wrapper"), join(path, "etc", "run", "b"));
      await writeFile(join(path, "etc", "run", "a"), SLEEPER, { mode: 0o755 });
      await writeFile(join(path, "etc", "run", "notes.txt"), "not executable", { mode: 0o644 });
      await writeFile(join(path, "etc", "service", "b"), SLEEPER, { mode: 0o755 });
      await writeFile(join(path, "etc", "service", "c"), SLEEPER, { mode: 0o755 });
      expect(await scanPrograms(path)).toEqual([
        { name: "a", processName: "a", command: join(path, "etc", "run", "a"), watched: false },
        // In both folders: run once, from etc/service, at its etc/run place, as slapgrid does.
        { name: "b", processName: "b-on-watch", command: join(path, "etc", "service", "b"), watched: true },
        { name: "c", processName: "c-on-watch", command: join(path, "etc", "service", "c"), watched: true },
      ]);
      await writeFile(join(path, "etc", "run", "two words"), SLEEPER, { mode: 0o755 });
      await expect(scanPrograms(path)).rejects.toThrow(
        /'two words' cannot go into a supervisord configuration/,
      );
      expect(await scanPrograms(join(path, "missing"))).toEqual([]);
    } finally {
      await rm(path, { recursive: true, force: true });
    }
  });

  it("writes no user= when the agent cannot switch users", () => {
    const config = renderPartitionConfig({
      reference: "slappart3",
      path: "/srv/slapgrid/slappart3",
      uid: null,
      gid: null,
      userName: "agent",
      programs: [
        { name: "x", processName: "x", command: "/srv/slapgrid/slappart3/etc/run/x", watched: false },
      ],
      logDirectory: "/srv/slapgrid/var/log/partitions/slappart3",
    });
    expect(config).not.toContain("user=");
    expect(config).toContain('environment=USER="agent",LOGNAME="agent",HOME="/srv/slapgrid/slappart3"\n');
  });
});

// ---------------------------------------------------------------------------------------------
// The driver, on a real supervisord

const NOBODY = 65534;
const NOGROUP = 65534;
const SLEEPER = "#!/bin/sh\nexec sleep 600\n";

interface Credentials {
  uid: string[];
  gid: string[];
  groups: number[];
}

async function credentialsOf(pid: number): Promise<Credentials> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const field = (name: string) =>
    (new RegExp(`^${name}:\\t(.*)$`, "m").exec(status)?.[1] ?? "").trim().split(/\s+/);
  return { uid: field("Uid"), gid: field("Gid"), groups: field("Groups").map(Number) };
}

async function environmentOf(pid: number): Promise<Record<string, string>> {
  const entries = (await readFile(`/proc/${pid}/environ`, "utf8")).split("\0").filter(Boolean);
  return Object.fromEntries(
    entries.map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]),
  );
}

/** Alive and not a zombie. */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describeWith(
  [
    requires.env("SLAPOS_VENV", "the real supervisord (supervisor 4.3.0)"),
    requires.root("supervisord switches partition processes to their users"),
  ],
  "supervisord driver",
  () => {
    let instanceRoot: string;
    let supervisor: Supervisor;
    let extraGroup: { name: string; gid: number };
    /** Every pid the tests saw, checked gone at the end. */
    const seen = new Set<number>();

    const paths = () => ({
      config: join(instanceRoot, "etc", "supervisord.conf"),
      socket: join(instanceRoot, "sv.sock"),
      pidFile: join(instanceRoot, "var", "run", "supervisord.pid"),
    });
    const supervisordPid = async () => {
      const pid = Number((await readFile(paths().pidFile, "utf8")).trim());
      seen.add(pid);
      return pid;
    };
    const newSupervisor = () => new Supervisor({ instanceRoot, pythonEnvironment: venv, logger });

    /** A partition directory as format makes it, owned by nobody, with executable scripts. */
    async function makePartition(
      reference: string,
      scripts: { run?: Record<string, string>; service?: Record<string, string> },
    ): Promise<PartitionProcesses> {
      const path = join(instanceRoot, reference);
      await mkdir(path, { mode: 0o750 });
      await chown(path, NOBODY, NOGROUP);
      await chmod(path, 0o750);
      for (const [folder, files] of Object.entries(scripts)) {
        for (const [name, content] of Object.entries(files)) await addScript(path, folder, name, content);
      }
      return { reference, path, uid: NOBODY, gid: NOGROUP, userName: "nobody" };
    }
    async function addScript(path: string, folder: string, name: string, content: string): Promise<void> {
      for (const directory of [join(path, "etc"), join(path, "etc", folder)]) {
        await mkdir(directory, { recursive: true });
        await chown(directory, NOBODY, NOGROUP);
      }
      const file = join(path, "etc", folder, name);
      await writeFile(file, content, { mode: 0o755 });
      await chown(file, NOBODY, NOGROUP);
    }
    async function processesOf(reference: string): Promise<Map<string, ProcessInfo>> {
      const all = await supervisor.processes();
      for (const info of all) if (info.pid) seen.add(info.pid);
      return new Map(all.filter((info) => info.group === reference).map((info) => [info.name, info]));
    }
    async function pidsOf(reference: string): Promise<Record<string, number>> {
      return Object.fromEntries([...(await processesOf(reference))].map(([name, info]) => [name, info.pid]));
    }

    /**
     * Deploys, then waits until every running process has exec'd its program: supervisord calls a
     * process RUNNING as soon as it forked (startsecs=0), and a signal that reaches the fork before
     * its exec is lost (it holds supervisord's Python handlers), so stopping it then takes stopwaitsecs.
     */
    async function deploy(partition: PartitionProcesses, by = supervisor): Promise<void> {
      await by.deployPartition(partition);
      await waitFor(`${partition.reference}'s programs to exec`, async () => {
        for (const info of (await processesOf(partition.reference)).values()) {
          const command = await readFile(`/proc/${info.pid}/cmdline`, "utf8").catch(() => "");
          if (info.state === "RUNNING" && command.includes(paths().config)) return false;
        }
        return true;
      });
    }
    const slappart0 = (): PartitionProcesses => ({
      reference: "slappart0",
      path: join(instanceRoot, "slappart0"),
      uid: NOBODY,
      gid: NOGROUP,
      userName: "nobody",
    });

    beforeAll(async () => {
      instanceRoot = await mkdtemp(join(tmpdir(), "sv-"));
      // Partition users must reach their partitions, as under /srv/slapgrid.
      await chmod(instanceRoot, 0o755);
      // nobody's supplementary group, to see that supervisord gives processes the user's groups.
      const name = `svtest${process.pid}`;
      await execa("groupadd", ["--users", "nobody", name]);
      extraGroup = { name, gid: Number((await execa("getent", ["group", name])).stdout.split(":")[2]) };
      supervisor = newSupervisor();
    });

    afterAll(async () => {
      await supervisor?.shutdown().catch(() => {});
      for (const pid of seen) {
        if (isAlive(pid)) process.kill(pid, "SIGKILL");
      }
      if (extraGroup) await execa("groupdel", [extraGroup.name], { reject: false });
      if (instanceRoot) await rm(instanceRoot, { recursive: true, force: true });
    });

    it("starts supervisord once, on a private socket, and reuses it", async () => {
      await supervisor.ensureRunning();
      const pid = await supervisordPid();
      expect(isAlive(pid)).toBe(true);
      expect((await stat(paths().socket)).mode & 0o777).toBe(0o700);
      expect((await stat(paths().config)).mode & 0o777).toBe(0o600);
      await supervisor.ensureRunning();
      expect(await supervisordPid()).toBe(pid);
      // It is detached: its own session, not the test's.
      const sessionOf = async (of: number) =>
        Number((await readFile(`/proc/${of}/stat`, "utf8")).split(") ")[1]?.split(" ")[3]);
      expect(await sessionOf(pid)).toBe(pid);
      expect(await sessionOf(process.pid)).not.toBe(pid);
    });

    it("runs etc/run and etc/service programs as the partition user, in SlapOS's configuration format", async () => {
      const partition = await makePartition("slappart0", { run: { x: SLEEPER }, service: { y: SLEEPER } });
      await deploy(partition);

      const processes = await processesOf("slappart0");
      expect([...processes.keys()]).toEqual(["x", "y-on-watch"]);
      expect(processes.get("x")).toMatchObject({ state: "RUNNING", watched: false });
      expect(processes.get("y-on-watch")).toMatchObject({ state: "RUNNING", watched: true });
      for (const info of processes.values()) {
        const credentials = await credentialsOf(info.pid);
        expect(credentials.uid).toEqual(Array(4).fill(String(NOBODY)));
        expect(credentials.gid).toEqual(Array(4).fill(String(NOGROUP)));
        expect(credentials.groups.sort()).toEqual([NOGROUP, extraGroup.gid].sort());
        const environment = await environmentOf(info.pid);
        expect(environment).toMatchObject({
          USER: "nobody",
          LOGNAME: "nobody",
          HOME: partition.path,
          PATH: SYSTEM_PATH,
        });
        // Nothing of the agent's environment.
        expect(environment.SLAPOS_VENV).toBeUndefined();
      }

      const configFile = join(instanceRoot, "etc", "supervisord.conf.d", "slappart0.conf");
      expect((await stat(configFile)).mode & 0o777).toBe(0o600);
      const config = await readFile(configFile, "utf8");
      expect(config).toContain("[group:slappart0]\nprograms=slappart0_x,slappart0_y\n");
      expect(config).toContain(
        `[program:slappart0_y]\ndirectory=${partition.path}\ncommand=${partition.path}/etc/service/y\nprocess_name=y-on-watch\n`,
      );
      expect(config).toContain(`user=${NOBODY}\n`);
      // Logs are written where the partition's user cannot put a link; the partition links to them.
      const logDirectory = join(instanceRoot, "var", "log", "partitions", "slappart0");
      expect(config).toContain(`stdout_logfile=${logDirectory}/slappart0_y.log\n`);
      expect(await readlink(join(partition.path, ".slappart0_y.log"))).toBe(
        join(logDirectory, "slappart0_y.log"),
      );
      expect((await stat(logDirectory)).mode & 0o777).toBe(0o750);

      // The real supervisorctl reads the same configuration.
      const status = await execa(join(venv, "bin", "supervisorctl"), ["-c", paths().config, "status"], {
        reject: false,
      });
      expect(status.stdout).toMatch(/^slappart0:x\s+RUNNING/m);
      expect(status.stdout).toMatch(/^slappart0:y-on-watch\s+RUNNING/m);
    });

    it("changes nothing when deployed again unchanged", async () => {
      const before = await pidsOf("slappart0");
      await deploy(slappart0());
      expect(await pidsOf("slappart0")).toEqual(before);
    });

    it("restarts the group with the new set when a program is added", async () => {
      const before = await pidsOf("slappart0");
      await addScript(slappart0().path, "run", "z", SLEEPER);
      await deploy(slappart0());
      const after = await processesOf("slappart0");
      expect([...after.keys()]).toEqual(["x", "y-on-watch", "z"]);
      for (const info of after.values()) expect(info.state).toBe("RUNNING");
      expect(after.get("x")?.pid).not.toBe(before.x);
      expect(after.get("y-on-watch")?.pid).not.toBe(before["y-on-watch"]);
      expect(Object.values(before).filter(isAlive)).toEqual([]);
    });

    it("shows a service that exits as EXITED and watched, and starts it again at the next deployment", async () => {
      // Counts its runs in its home, the partition.
      await addScript(slappart0().path, "service", "quit", '#!/bin/sh\necho run >> "$HOME/runs"\nexit 3\n');
      const runs = async () =>
        (await readFile(join(slappart0().path, "runs"), "utf8").catch(() => "")).length / 4;
      const exited = async () => {
        const info = (await processesOf("slappart0")).get("quit-on-watch");
        return info?.state === "EXITED" && info;
      };
      await deploy(slappart0());
      expect(await waitFor("quit-on-watch to exit", exited)).toMatchObject({
        watched: true,
        exitStatus: 3,
        pid: 0,
      });
      expect(await runs()).toBe(1);
      const running = await pidsOf("slappart0");

      await deploy(slappart0());
      await waitFor("quit-on-watch to exit again", exited);
      expect(await runs()).toBe(2);
      // Only the exited one was started again.
      const again = await pidsOf("slappart0");
      for (const name of ["x", "y-on-watch", "z"]) expect(again[name]).toBe(running[name]);
    });

    it("refuses to run processes with a group other than the user's primary group, or as root", async () => {
      const partition = await makePartition("slappart9", { run: { x: SLEEPER } });
      await expect(supervisor.deployPartition({ ...partition, gid: extraGroup.gid })).rejects.toThrow(
        /gid 65534, the passwd entry's primary group, but the partition belongs to nobody with gid/,
      );
      await expect(
        supervisor.deployPartition({ ...partition, uid: 0, gid: 0, userName: "root" }),
      ).rejects.toThrow(/never as root/);
      expect(await processesOf("slappart9")).toEqual(new Map());
      expect(existsSync(join(instanceRoot, "etc", "supervisord.conf.d", "slappart9.conf"))).toBe(false);
    });

    it("sees the running processes from a new agent, and leaves them alone", async () => {
      const before = await pidsOf("slappart0");
      const pid = await supervisordPid();
      const restarted = newSupervisor();
      await restarted.ensureRunning();
      expect(await supervisordPid()).toBe(pid);
      const seenByNewAgent = (await restarted.processes()).filter((info) => info.group === "slappart0");
      expect(seenByNewAgent.map((info) => info.pid)).toEqual(Object.values(before));
      await deploy(slappart0(), restarted);
      const after = await pidsOf("slappart0");
      for (const name of ["x", "y-on-watch", "z"]) expect(after[name]).toBe(before[name]);
    });

    it("stops and removes a partition's group, and an absent one without error", async () => {
      const partition = await makePartition("slappart1", { run: { a: SLEEPER } });
      await deploy(partition);
      const pid = (await pidsOf("slappart1")).a ?? 0;
      expect(isAlive(pid)).toBe(true);

      await supervisor.stopPartition("slappart1");
      expect(await processesOf("slappart1")).toEqual(new Map());
      expect(isAlive(pid)).toBe(false);
      expect(existsSync(join(instanceRoot, "etc", "supervisord.conf.d", "slappart1.conf"))).toBe(false);
      await supervisor.stopPartition("slappart1");
      await supervisor.stopPartition("slappart404");
      expect((await processesOf("slappart0")).size).toBe(4);

      // A partition whose programs are all gone is removed too.
      await deploy(partition);
      const again = (await pidsOf("slappart1")).a ?? 0;
      expect(isAlive(again)).toBe(true);
      await unlink(join(partition.path, "etc", "run", "a"));
      await deploy(partition);
      expect(await processesOf("slappart1")).toEqual(new Map());
      expect(isAlive(again)).toBe(false);
    });

    it("decodes supervisord's own answers as Python's xmlrpc.client does", async () => {
      const calls: [string, XmlRpcParam[]][] = [
        ["supervisor.getState", []],
        ["supervisor.getAllProcessInfo", []],
        ["supervisor.reloadConfig", []],
        ["supervisor.getProcessInfo", ["slappart0:y-on-watch"]],
        ["supervisor.stopProcessGroup", ["slappart404"]],
        ["supervisor.startProcess", ["slappart0:x"]],
        ["system.listMethods", []],
        ["system.methodSignature", ["supervisor.startProcessGroup"]],
      ];
      const answers = await Promise.all(
        calls.map(([method, params]) => postXmlRpc(paths().socket, encodeMethodCall(method, params), 10_000)),
      );
      const reference = (await python(PYTHON_LOADS, answers)) as unknown[];
      expect(answers.map(decodedLikePython)).toEqual(reference);
      // The faults are supervisor's, by name: stopping an unknown group, starting a running process.
      expect(reference[4]).toEqual({ fault: [10, "BAD_NAME: slappart404"] });
      expect(reference[5]).toEqual({ fault: [60, "ALREADY_STARTED: slappart0:x"] });
    });

    it("recovers from a killed supervisord: stale socket and pid file, orphaned processes", async () => {
      const oldPid = await supervisordPid();
      const orphans = Object.values(await pidsOf("slappart0")).filter(Boolean);
      process.kill(oldPid, "SIGKILL");
      await waitFor("supervisord to die", async () => !isAlive(oldPid));
      expect(existsSync(paths().socket) && existsSync(paths().pidFile)).toBe(true);
      expect(orphans.length).toBe(3);
      expect(orphans.every(isAlive)).toBe(true);

      await supervisor.ensureRunning();
      const newPid = await supervisordPid();
      expect(newPid).not.toBe(oldPid);
      expect(isAlive(newPid)).toBe(true);
      expect(orphans.filter(isAlive)).toEqual([]);
      // The new supervisord read the partition's configuration; the next deployment starts it.
      const loaded = await processesOf("slappart0");
      expect([...loaded.values()].map((info) => info.state)).toEqual(Array(4).fill("STOPPED"));
      await deploy(slappart0());
      const restarted = await processesOf("slappart0");
      for (const name of ["x", "y-on-watch", "z"]) expect(restarted.get(name)?.state).toBe("RUNNING");
    });

    it("shuts supervisord down with every process, and nothing the tests started survives", async () => {
      const pid = await supervisordPid();
      await processesOf("slappart0");
      await supervisor.shutdown();
      expect(isAlive(pid)).toBe(false);
      expect(existsSync(paths().socket)).toBe(false);
      expect(existsSync(paths().pidFile)).toBe(false);
      expect([...seen].filter(isAlive)).toEqual([]);
      await expect(supervisor.processes()).rejects.toThrow(/supervisord is not running/);
    });
  },
);
