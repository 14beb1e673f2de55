import { join } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  assertXmlCompatible,
  MarshalError,
  type Marshallable,
  marshal,
  PyFloat,
  PyObject,
  PyTuple,
  pythonFloatRepr,
  unmarshal,
} from "../../protocol/xml-marshaller.js";
import { describeWith, requires } from "../support/requirements.js";

describe("xml_marshaller codec", () => {
  it("writes the reference examples byte for byte", () => {
    expect(marshal({ b: 1, a: [true, null] })).toBe(
      '<marshal><dictionary id="i2"><string>a</string><list id="i3"><bool>1</bool><none/></list><string>b</string><int>1</int></dictionary></marshal>',
    );
    expect(marshal(new PyTuple(["x", new PyFloat(2.5)]))).toBe(
      "<marshal><tuple><string>x</string><float>2.5</float></tuple></marshal>",
    );
    const shared = { a: 1 };
    expect(marshal([shared, shared])).toBe(
      '<marshal><list id="i2"><dictionary id="i3"><string>a</string><int>1</int></dictionary><reference id="i3"/></list></marshal>',
    );
    expect(marshal('é<&>"')).toBe('<marshal><string>&#233;&amp;lt;&amp;amp;&amp;gt;"</string></marshal>');
    const release = new PyObject("SoftwareRelease", ["http://sr", "COMP-1"], {
      _computer_guid: "COMP-1",
      _requested_state: "available",
      _software_instance_list: [],
      _software_release: "http://sr",
    });
    expect(marshal(release)).toBe(
      '<marshal><object id="i2" module="slapos.slap.slap" class="SoftwareRelease"><tuple><string>http://sr</string><string>COMP-1</string></tuple><dictionary id="i3"><string>_computer_guid</string><string>COMP-1</string><string>_requested_state</string><string>available</string><string>_software_instance_list</string><list id="i4"/><string>_software_release</string><string>http://sr</string></dictionary></object></marshal>',
    );
  });

  it("reads them back, references resolving to the same object", () => {
    const decoded = unmarshal(
      '<marshal><list id="i2"><dictionary id="i3"><string>a</string><int>1</int></dictionary><reference id="i3"/></list></marshal>',
    ) as Marshallable[];
    expect(decoded).toEqual([{ a: 1 }, { a: 1 }]);
    expect(decoded[0]).toBe(decoded[1]);
    expect(unmarshal("<marshal><string/></marshal>")).toBe("");
    expect(unmarshal("<marshal><unicode>a&amp;amp;b</unicode></marshal>")).toBe("a&b");
    const object = unmarshal(
      '<marshal><object id="i2" module="slapos.slap.slap" class="Computer"><tuple><string>COMP-1</string></tuple><dictionary id="i3"><string>_computer_id</string><string>COMP-1</string></dictionary></object></marshal>',
    );
    expect(object).toEqual(new PyObject("Computer", ["COMP-1"], { _computer_id: "COMP-1" }));
  });

  it("formats floats as Python's repr does", () => {
    const cases: [number, string][] = [
      [0.1, "0.1"],
      [2, "2.0"],
      [100, "100.0"],
      [1e16, "1e+16"],
      [1.5e-7, "1.5e-07"],
      [1e-5, "1e-05"],
      [0.0001, "0.0001"],
      [1.2345678901234568e17, "1.2345678901234568e+17"],
      [-0, "-0.0"],
      [Number.POSITIVE_INFINITY, "inf"],
      [Number.NaN, "nan"],
      [1795561481.1248727, "1795561481.1248727"],
    ];
    for (const [value, repr] of cases) expect(pythonFloatRepr(value)).toBe(repr);
  });

  it("refuses classes other than the four SlapOS ones, and strings XML cannot hold", () => {
    expect(() =>
      unmarshal(
        '<marshal><object id="i2" module="os" class="system"><tuple/><dictionary id="i3"/></object></marshal>',
      ),
    ).toThrow(/refusing to unmarshal class os.system/);
    expect(() => marshal(new PyObject("Evil" as never, [], {}))).toThrow(MarshalError);
    expect(() => marshal("nul \u0000 byte")).toThrow(/XML compatible: U\+0000/);
  });

  it("keeps a dictionary key named __proto__ as data", () => {
    const decoded = unmarshal(
      '<marshal><dictionary id="i2"><string>__proto__</string><string>x</string></dictionary></marshal>',
    ) as Record<string, Marshallable>;
    expect(Object.keys(decoded)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
  });

  it("round-trips any value: unmarshal(marshal(x)) equals x", () => {
    fc.assert(
      fc.property(marshallable(), (value) => {
        expect(unmarshal(marshal(value))).toEqual(value);
      }),
      { numRuns: 300 },
    );
  });

  it("never fails on arbitrary input with anything but a MarshalError", () => {
    const valid = marshal({ key: ["value", 1, new PyFloat(1.5), null, new PyTuple([true])] });
    fc.assert(
      fc.property(fc.oneof(fc.string(), mutated(valid)), (text) => {
        try {
          unmarshal(text);
        } catch (error) {
          expect(error).toBeInstanceOf(MarshalError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describeWith(
  [requires.env("SLAPOS_VENV", "the real xml_marshaller from PyPI (slapos.core's dependency)")],
  "xml_marshaller codec against the real Python xml_marshaller",
  () => {
    it("writes the same bytes as Python for the same values, and Python reads ours back unchanged", async () => {
      const values = fc.sample(marshallable(), { numRuns: 400, seed: 4242 });
      const cases = values.map((value) => ({ value: toTagged(value), xml: marshal(value) }));
      const peer = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [join(import.meta.dirname, "marshal_peer.py")],
        {
          input: JSON.stringify(cases),
        },
      );
      const answers = JSON.parse(peer.stdout) as { xml: string; decoded: unknown }[];
      expect(answers).toHaveLength(cases.length);
      answers.forEach((answer, index) => {
        const ours = cases[index]?.xml;
        expect(Buffer.from(answer.xml, "base64").toString("utf8"), `value #${index}`).toBe(ours);
        expect(answer.decoded, `value #${index}`).toEqual(cases[index]?.value);
      });
    });
  },
);

/** Values of every kind the marshaller carries (objects aside), nested. */
function marshallable(): fc.Arbitrary<Marshallable> {
  const text = fc.string({
    unit: fc.oneof(fc.constantFrom("&", "<", ">", '"', "'", "\r", "\n", "\t", "é", "😀", "a", " ")),
  });
  const scalar: fc.Arbitrary<Marshallable> = fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -1_000_000, max: 1_000_000 }),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).filter((big) => big < -(2n ** 53n) || big > 2n ** 53n),
    fc.double({ noNaN: true }).map((number) => new PyFloat(number)),
    fc.string().filter((candidate) => {
      try {
        assertXmlCompatible(candidate);
        return true;
      } catch {
        return false;
      }
    }),
    text,
  );
  const { value } = fc.letrec<{ value: Marshallable }>((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      scalar,
      fc.array(tie("value"), { maxLength: 4 }),
      fc.array(tie("value"), { maxLength: 3 }).map((items) => new PyTuple(items)),
      fc.dictionary(fc.oneof(text, fc.string({ maxLength: 6 })), tie("value"), { maxKeys: 4 }),
    ),
  }));
  return value;
}

/** XML with characters changed, dropped or inserted at random. */
function mutated(xml: string): fc.Arbitrary<string> {
  return fc
    .array(fc.tuple(fc.nat(xml.length), fc.constantFrom("", "<", ">", "&", '"', "x", "</", "/>", "&#0;")), {
      minLength: 1,
      maxLength: 4,
    })
    .map((edits) =>
      edits.reduce((text, [at, insert]) => text.slice(0, at) + insert + text.slice(at + 1), xml),
    );
}

/** The typed JSON the Python peer turns into the same Python value. */
function toTagged(value: Marshallable): unknown {
  if (value === null) return { t: "none" };
  if (typeof value === "boolean") return { t: "bool", v: value };
  if (typeof value === "number" || typeof value === "bigint") return { t: "int", v: String(value) };
  if (typeof value === "string") return { t: "str", v: value };
  if (value instanceof PyFloat) return { t: "float", v: pythonFloatRepr(value.value) };
  if (value instanceof PyTuple) return { t: "tuple", v: value.items.map(toTagged) };
  if (value instanceof PyObject) throw new Error("objects are covered by the golden tests");
  if (Array.isArray(value)) return { t: "list", v: value.map(toTagged) };
  return {
    t: "dict",
    v: Object.keys(value)
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      .map((key) => [key, toTagged(value[key] as Marshallable)]),
  };
}
