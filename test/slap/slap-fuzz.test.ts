import fc from "fast-check";
import { Agent, request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { type Marshallable, marshal, PyFloat, PyObject, PyTuple } from "../../protocol/xml-marshaller.js";
import { type HttpsMaster, startHttpsMaster } from "../master/https-master.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

// Schemathesis-style fuzzing of the classic SLAP API: random forms and query strings, with
// random, mutated and hostile marshalled XML in the XML fields, sent as the admin (who may reach
// every code path) to every route of master/slap/app.ts over a real master. A 5xx is a failure:
// every bad input must be answered with a 4xx that says what was wrong.

const RELEASE = "https://example.com/software/web/software.cfg";

const GET_ROUTES: Record<string, string[]> = {
  getHateoasUrl: [],
  getFullComputerInformation: ["computer_id"],
  getComputerInformation: ["computer_id"],
  registerComputerPartition: ["computer_reference", "computer_partition_reference"],
  getComputerPartitionCertificate: ["computer_id", "computer_partition_id"],
};

const SOFTWARE_REPORT = ["computer_id", "url", "error_log"];
const PARTITION_REPORT = ["computer_id", "computer_partition_id"];
const POST_ROUTES: Record<string, string[]> = {
  loadComputerConfigurationFromXML: ["xml"],
  supplySupply: ["url", "computer_id", "state"],
  requestComputerPartition: [
    "computer_id",
    "computer_partition_id",
    "software_release",
    "software_type",
    "partition_reference",
    "partition_parameter_xml",
    "filter_xml",
    "shared_xml",
    "state",
  ],
  setComputerPartitionConnectionXml: [...PARTITION_REPORT, "slave_reference", "connection_xml"],
  buildingSoftwareRelease: SOFTWARE_REPORT,
  availableSoftwareRelease: SOFTWARE_REPORT,
  softwareReleaseError: SOFTWARE_REPORT,
  destroyedSoftwareRelease: SOFTWARE_REPORT,
  startedComputerPartition: PARTITION_REPORT,
  stoppedComputerPartition: PARTITION_REPORT,
  softwareInstanceError: [...PARTITION_REPORT, "slave_reference", "error_log"],
  destroyedComputerPartition: PARTITION_REPORT,
  softwareInstanceBang: [...PARTITION_REPORT, "message"],
  computerBang: ["computer_id", "message"],
  useComputer: ["computer_id", "use_string"],
  updateComputerPartitionRelatedInstanceList: [...PARTITION_REPORT, "instance_reference_xml"],
};

const XML_FIELDS = new Set([
  "xml",
  "partition_parameter_xml",
  "filter_xml",
  "shared_xml",
  "connection_xml",
  "instance_reference_xml",
  "use_string",
]);

/** Lists of two references to the previous list: 2 KB spelling ~130 MB. */
function referenceBomb(depth: number): string {
  let lists = `<list id="i4"><string>${"x".repeat(1000)}</string></list>`;
  for (let level = 1; level <= depth; level++)
    lists += `<list id="i${level + 4}"><reference id="i${level + 3}"/><reference id="i${level + 3}"/></list>`;
  return `<marshal><dictionary id="i2"><string>p</string><list id="i3">${lists}</list></dictionary></marshal>`;
}

const HOSTILE_XML = [
  referenceBomb(16),
  referenceBomb(17),
  '<marshal><list id="i2"><reference id="i2"/></list></marshal>',
  '<marshal><dictionary id="i2"><string>p</string><list id="i3"><long>1000000000000000000000000</long></list></dictionary></marshal>',
  `<marshal>${'<list id="x">'.repeat(300)}${"</list>".repeat(300)}</marshal>`,
  '<!DOCTYPE m [<!ENTITY a "aaaa">]><marshal><string>&a;</string></marshal>',
  `<marshal><dictionary id="i2"><string>p</string><string>${"&#0;"}</string></dictionary></marshal>`,
  `<marshal><long>${"9".repeat(100_000)}</long></marshal>`,
  `<marshal><list id="i2">${"<none/>".repeat(120_000)}</list></marshal>`,
  '<marshal><object id="i2" module="os" class="system"><tuple/><dictionary id="i3"/></object></marshal>',
  "<marshal><string>started</string></marshal>",
  "<marshal><bool>1</bool></marshal>",
  "<marshal><none/></marshal>",
];

/** Strings of every awkward kind: empty, "None", NUL, control and astral characters, huge. */
function awkwardString(): fc.Arbitrary<string> {
  return fc.oneof(
    fc.string(),
    fc.string({ unit: "grapheme", maxLength: 40 }),
    fc.constantFrom("", "None", "none", "nul\u0000byte", "\u0001\u001f", "\ud800", "😀", "../../etc/passwd"),
    fc.integer({ min: 60, max: 70 }).map((length) => "r".repeat(length)),
    // Around the limits, and beyond what a database index row holds (incompressible text).
    {
      arbitrary: fc
        .tuple(fc.constantFrom(200, 201, 2048, 2049, 9000), fc.integer())
        .map(([length, seed]) => noise(length, seed)),
      weight: 3,
    },
  );
}

/** `length` characters of pseudo-random letters and digits: text no compression shrinks. */
function noise(length: number, seed: number): string {
  let state = seed >>> 0 || 1;
  let text = "";
  for (let index = 0; index < length; index++) {
    state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
    text += "abcdefghijklmnopqrstuvwxyz0123456789"[(state >>> 16) % 36];
  }
  return text;
}

/** Values of every kind the marshaller carries, nested. */
function marshallable(): fc.Arbitrary<Marshallable> {
  const scalar: fc.Arbitrary<Marshallable> = fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
    fc.double().map((number) => new PyFloat(number)),
    fc.string(),
    fc.constantFrom("started", "stopped", "destroyed", "available", RELEASE),
  );
  const { value } = fc.letrec<{ value: Marshallable }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small" },
      scalar,
      fc.array(tie("value"), { maxLength: 4 }),
      fc.array(tie("value"), { maxLength: 3 }).map((items) => new PyTuple(items)),
      fc.dictionary(fc.string({ maxLength: 12 }), tie("value"), { maxKeys: 4 }),
      fc
        .tuple(
          fc.constantFrom("Computer", "ComputerPartition", "SoftwareRelease", "SoftwareInstance" as const),
          fc.dictionary(fc.string({ maxLength: 8 }), tie("value"), { maxKeys: 3 }),
        )
        .map(([className, state]) => new PyObject(className, [], state)),
    ),
  }));
  return value;
}

/** XML with characters changed, dropped or inserted at random. */
function mutated(xml: string): fc.Arbitrary<string> {
  return fc
    .array(
      fc.tuple(
        fc.nat(xml.length),
        fc.constantFrom("", "<", ">", "&", '"', "x", "</", "/>", "&#0;", "\u0000"),
      ),
      { minLength: 1, maxLength: 4 },
    )
    .map((edits) =>
      edits.reduce((text, [at, insert]) => text.slice(0, at) + insert + text.slice(at + 1), xml),
    );
}

function safeMarshal(value: Marshallable): string {
  try {
    return marshal(value);
  } catch {
    return "<marshal><none/></marshal>";
  }
}

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `SLAP API fuzzing answers no 5xx, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let admin: MasterClient;
    let agent: Agent;
    let computerId: string;
    let partition: string;

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      admin = master.admin;
      const { ca, certificate, key } = admin.connection;
      agent = new Agent({ connect: { ca, cert: certificate, key } });
      const node = await master.node(admin, ["slappart0", "slappart1", "slappart2", "slappart3"]);
      computerId = node.id;
      await admin.supply(computerId, RELEASE);
      const instance = await admin.requestInstance({
        title: "fuzzed",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: computerId },
      });
      partition = instance.partitionReference ?? "slappart0";
    });
    afterAll(async () => {
      await agent?.close();
      await master?.close();
    });

    /** A field's value: real references often (to reach deep code paths), awkward ones too. */
    const fieldValue = (name: string): fc.Arbitrary<string> => {
      if (XML_FIELDS.has(name) || name === "state") {
        const description = fc
          .record({
            reference: fc.oneof(fc.constant(computerId), awkwardString()),
            partition_list: fc.array(
              fc.record({
                reference: fc.oneof(fc.constantFrom("slappart0", "slappart9"), awkwardString()),
                tap: fc.record({ name: awkwardString() }),
                address_list: fc.array(fc.record({ addr: awkwardString(), netmask: awkwardString() }), {
                  maxLength: 3,
                }),
              }),
              { maxLength: 3 },
            ),
          })
          .map(safeMarshal);
        // A computer description (loadComputerConfigurationFromXML) with awkward contents.
        if (name === "xml") return fc.oneof(description, description, fc.constantFrom(...HOSTILE_XML));
        return fc.oneof(
          marshallable().map(safeMarshal),
          fc
            .dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 40 }), { maxKeys: 5 })
            .map((dictionary) => marshal(dictionary)),
          marshallable().chain((value) => mutated(safeMarshal(value))),
          fc.constantFrom(...HOSTILE_XML),
          awkwardString(),
        );
      }
      const real: Record<string, string[]> = {
        computer_id: [computerId],
        computer_reference: [computerId],
        computer_partition_id: [partition, "slappart1"],
        computer_partition_reference: [partition],
        url: [RELEASE],
        software_release: [RELEASE],
        partition_reference: ["fuzzed", "fuzzed-child"],
      };
      const known = real[name];
      return known ? fc.oneof(fc.constantFrom(...known), awkwardString()) : awkwardString();
    };

    /** Each field present five times in six, so that routes get past their required fields. */
    const form = (fields: string[]) =>
      fc
        .tuple(...fields.map((name) => fc.option(fieldValue(name), { freq: 5, nil: undefined })))
        .map((values) =>
          Object.fromEntries(
            fields.flatMap((name, index) => (values[index] === undefined ? [] : [[name, values[index]]])),
          ),
        ) as fc.Arbitrary<Record<string, string>>;

    const call = fc.oneof(
      fc
        .constantFrom(...Object.keys(GET_ROUTES))
        .chain((route) => form(GET_ROUTES[route] ?? []).map((fields) => ({ method: "GET", route, fields }))),
      fc
        .constantFrom(...Object.keys(POST_ROUTES))
        .chain((route) =>
          form(POST_ROUTES[route] ?? []).map((fields) => ({ method: "POST", route, fields })),
        ),
    );

    it("answers every random and hostile form with a status below 500", async () => {
      await fc.assert(
        fc.asyncProperty(call, async ({ method, route, fields }) => {
          const query = method === "GET" ? `?${new URLSearchParams(fields)}` : "";
          const response = await request(new URL(`/${route}${query}`, master.master.url), {
            method: method as "GET" | "POST",
            dispatcher: agent,
            ...(method === "POST"
              ? {
                  body: new URLSearchParams(fields).toString(),
                  headers: { "content-type": "application/x-www-form-urlencoded" },
                }
              : {}),
          });
          const text = await response.body.text();
          expect(response.statusCode, `${method} /${route}: ${text.slice(0, 300)}`).toBeLessThan(500);
        }),
        { numRuns: 1000 },
      );
    });
  });
}
