import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { type MasterProcess, spawnMaster } from "../master/spawn.js";
import { marshal } from "../protocol/xml-marshaller.js";
import { type LatencySummary, summarize } from "./stats.js";

// What hostile bodies cost everyone else: a reader's latency (getFullComputerInformation of a
// computer with some instances) alone, then, in the same run, while 8 callers post the worst
// bodies in a loop. Target (DESIGN.md, trust boundaries): no small body costs more than
// milliseconds or blocks another caller.

export interface HostileBenchOptions {
  partitions: number;
  readers: number;
  seconds: number;
}

interface Phase {
  /** The reader's figures. */
  reads: number;
  latency: LatencySummary;
  /** The hostile callers' figures: how many bodies, answered how, how fast. */
  hostile?: { posted: number; statuses: Record<string, number>; latency: LatencySummary };
  /** The master's resident memory peak so far (VmHWM), read after the phase. */
  peakRssMb: number;
}

export interface HostileBenchResult {
  alone: Phase;
  bombAndDeepJson: Phase;
  largestDecodable: Phase;
  largestJson: Phase;
  masterRss: { currentMb: number; peakMb: number };
}

const COMPUTER = "COMP-HOSTILE";
const RELEASE = "https://example.com/software/bench/software.cfg";
const HOSTILE_CALLERS = 8;

/** 2 KB of XML spelling 2^17 copies of a 1,000-character string (~130 MB) through references. */
function referenceBomb(depth = 16): string {
  let lists = `<list id="i4"><string>${"x".repeat(1000)}</string></list>`;
  for (let level = 1; level <= depth; level++)
    lists += `<list id="i${level + 4}"><reference id="i${level + 3}"/><reference id="i${level + 3}"/></list>`;
  return `<marshal><dictionary id="i2"><string>p</string><list id="i3">${lists}</list></dictionary></marshal>`;
}

/**
 * A parameter dictionary the decoder must read to its end before it can refuse it (a list
 * value), as large as fits, form-encoded, in the master's 4 MiB body limit.
 */
function largestDecodable(): string {
  const item = `<string>${"y".repeat(32)}</string>`;
  const encoded = new URLSearchParams({ p: item }).toString().length - 2;
  const count = Math.floor((3.9 * 1024 * 1024) / encoded);
  return `<marshal><dictionary id="i2"><string>p</string><list id="i3">${item.repeat(count)}</list></dictionary></marshal>`;
}

async function rssOf(pid: number): Promise<{ currentMb: number; peakMb: number }> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return { currentMb: Math.round(kb("VmRSS") / 1024), peakMb: Math.round(kb("VmHWM") / 1024) };
}

export async function benchHostile(
  options: HostileBenchOptions,
  log: (line: string) => void,
): Promise<HostileBenchResult> {
  const directory = await mkdtemp(join(tmpdir(), "hostile-bench-"));
  let master: MasterProcess | undefined;
  const agent = new Agent({ connections: 64 });
  try {
    // Plain HTTP as the implicit admin (--insecure-http): the reader and the hostile callers
    // measure body handling, not TLS handshakes.
    master = await spawnMaster(["--data", join(directory, "master"), "--port", "0", "--insecure-http"]);
    const base = master.url;
    const pid = master.child.pid as number;
    const post = async (path: string, body: string, contentType: string) => {
      const response = await request(new URL(path, base), {
        method: "POST",
        dispatcher: agent,
        headers: { "content-type": contentType },
        body,
      });
      const text = await response.body.text();
      return { status: response.statusCode, text };
    };
    const slap = (path: string, fields: Record<string, string>) =>
      post(path, new URLSearchParams(fields).toString(), "application/x-www-form-urlencoded");
    const must = async (answer: Promise<{ status: number; text: string }>, what: string) => {
      const { status, text } = await answer;
      if (status >= 300) throw new Error(`${what}: HTTP ${status}: ${text.slice(0, 300)}`);
    };

    log(`preparing ${COMPUTER} with ${options.partitions} instances`);
    await must(
      slap("loadComputerConfigurationFromXML", {
        xml: marshal({
          reference: COMPUTER,
          partition_list: Array.from({ length: options.partitions }, (_, index) => ({
            reference: `slappart${index}`,
            address_list: [{ addr: `fd00::${(index + 16).toString(16)}`, netmask: "64" }],
          })),
        }),
      }),
      "loadComputerConfigurationFromXML",
    );
    await must(slap("supplySupply", { url: RELEASE, computer_id: COMPUTER }), "supplySupply");
    for (let index = 0; index < options.partitions; index++) {
      await must(
        slap("requestComputerPartition", {
          software_release: RELEASE,
          partition_reference: `instance-${index}`,
          partition_parameter_xml: marshal({ name: `instance-${index}`, port: String(8000 + index) }),
          filter_xml: marshal({ computer_guid: COMPUTER }),
        }),
        "requestComputerPartition",
      );
    }

    const readUrl = new URL(`getFullComputerInformation?computer_id=${COMPUTER}`, base);
    const readOnce = async () => {
      const response = await request(readUrl, { dispatcher: agent });
      await response.body.text();
      if (response.statusCode !== 200)
        throw new Error(`getFullComputerInformation: HTTP ${response.statusCode}`);
    };
    for (let warm = 0; warm < 50; warm++) await readOnce();

    /** Readers for `seconds`, with `callers` posting `attack(index)` in a loop meanwhile. */
    const phase = async (
      attack?: (caller: number) => Promise<{ status: number; text: string }>,
    ): Promise<Phase> => {
      const deadline = performance.now() + options.seconds * 1000;
      const reads: number[] = [];
      const hostile: number[] = [];
      const statuses: Record<string, number> = {};
      const readers = Array.from({ length: options.readers }, async () => {
        while (performance.now() < deadline) {
          const begin = performance.now();
          await readOnce();
          reads.push(performance.now() - begin);
        }
      });
      const callers = attack
        ? Array.from({ length: HOSTILE_CALLERS }, async (_, caller) => {
            while (performance.now() < deadline) {
              const begin = performance.now();
              const { status } = await attack(caller);
              hostile.push(performance.now() - begin);
              statuses[status] = (statuses[status] ?? 0) + 1;
            }
          })
        : [];
      await Promise.all([...readers, ...callers]);
      return {
        peakRssMb: (await rssOf(pid)).peakMb,
        reads: reads.length,
        latency: summarize(reads),
        ...(attack ? { hostile: { posted: hostile.length, statuses, latency: summarize(hostile) } } : {}),
      };
    };

    log(`${options.readers} readers alone for ${options.seconds} s`);
    const alone = await phase();

    const bomb = referenceBomb();
    const depth = 1024 * 1024;
    const deepJson = `${"[".repeat(depth)}${"]".repeat(depth)}`;
    log(
      `${options.readers} readers, ${HOSTILE_CALLERS} callers posting reference bombs and 2 MB of nested JSON, ${options.seconds} s`,
    );
    const bombForm = new URLSearchParams({
      software_release: RELEASE,
      partition_reference: "bomb",
      partition_parameter_xml: bomb,
    }).toString();
    const bombAndDeepJson = await phase((caller) =>
      caller % 2 === 0
        ? post("requestComputerPartition", bombForm, "application/x-www-form-urlencoded")
        : post("api/v1/register", deepJson, "application/json"),
    );

    const largest = largestDecodable();
    log(
      `${options.readers} readers, ${HOSTILE_CALLERS} callers posting ${(largest.length / 1024 / 1024).toFixed(1)} MB parameter dictionaries (list values) refused only at their end, ${options.seconds} s`,
    );
    // Encoded once: the load generator shares the machine's two cores with the master.
    const largestForm = new URLSearchParams({
      software_release: RELEASE,
      partition_reference: "largest",
      partition_parameter_xml: largest,
    }).toString();
    const largestPhase = await phase(() =>
      post("requestComputerPartition", largestForm, "application/x-www-form-urlencoded"),
    );
    // The JSON API's equivalent, for comparison: a parameter that is a list, refused by its schema.
    const largestJson = JSON.stringify({
      title: "largest",
      softwareReleaseUrl: RELEASE,
      parameters: { p: Array.from({ length: Math.floor(largestForm.length / 35) }, () => "y".repeat(32)) },
    });
    log(
      `${options.readers} readers, ${HOSTILE_CALLERS} callers posting ${(largestJson.length / 1024 / 1024).toFixed(1)} MB JSON instance requests (list parameter) to /api/v1/instances, ${options.seconds} s`,
    );
    const largestJsonPhase = await phase(() => post("api/v1/instances", largestJson, "application/json"));
    const masterRss = await rssOf(pid);
    return {
      alone,
      bombAndDeepJson,
      largestDecodable: largestPhase,
      largestJson: largestJsonPhase,
      masterRss,
    };
  } finally {
    await agent.close();
    if (master) {
      master.child.kill("SIGTERM");
      await master.child;
    }
    await rm(directory, { recursive: true, force: true });
  }
}
