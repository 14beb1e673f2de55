import { join } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { SaxesParser } from "saxes";
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

describe("xml_marshaller decoding bounds its work and output", () => {
  /** {p: [l0, ... l(depth)]}: l0 holds a 1,000-character string, l(k) two references to l(k-1). */
  const bomb = (depth: number) => {
    let lists = `<list id="i4"><string>${"x".repeat(1000)}</string></list>`;
    for (let level = 1; level <= depth; level++)
      lists += `<list id="i${level + 4}"><reference id="i${level + 3}"/><reference id="i${level + 3}"/></list>`;
    return `<marshal><dictionary id="i2"><string>p</string><list id="i3">${lists}</list></dictionary></marshal>`;
  };

  it("refuses a reference bomb by the size a consumer would walk, not by walking it", () => {
    expect(() => unmarshal(bomb(16))).toThrow(/expands to more than 4194304 characters/);
    // Empty lists: values, not text, are what explode.
    const lists = Array.from(
      { length: 30 },
      (_, level) =>
        `<list id="i${level + 5}"><reference id="i${level + 4}"/><reference id="i${level + 4}"/></list>`,
    ).join("");
    expect(() => unmarshal(`<marshal><list id="i3"><list id="i4"/>${lists}</list></marshal>`)).toThrow(
      /expands to more than 100000 values/,
    );
    // Within the bounds, references still resolve to one shared value.
    const small = unmarshal(bomb(3)) as { p: Marshallable[][] };
    expect(small.p[3]?.[0]).toBe(small.p[2]);
  });

  it("refuses a bounded computer description that would expand to a million addresses", () => {
    const address = '<dictionary id="i6"><string>addr</string><string>10.0.0.1</string></dictionary>';
    const partition = `<dictionary id="i4"><string>address_list</string><list id="i5">${address}${'<reference id="i6"/>'.repeat(999)}</list></dictionary>`;
    const xml = `<marshal><dictionary id="i2"><string>partition_list</string><list id="i3">${partition}${'<reference id="i4"/>'.repeat(999)}</list></dictionary></marshal>`;
    expect(() => unmarshal(xml)).toThrow(/more than 100000 values/);
  });

  it("refuses cycles: a container referring to itself or to one still open", () => {
    expect(() => unmarshal('<marshal><list id="i2"><reference id="i2"/></list></marshal>')).toThrow(/cycle/);
    expect(() =>
      unmarshal(
        '<marshal><dictionary id="i2"><string>a</string><list id="i3"><reference id="i2"/></list></dictionary></marshal>',
      ),
    ).toThrow(/cycle/);
    // The same id twice would let a reference reach the open one while looking closed.
    expect(() =>
      unmarshal(
        '<marshal><list id="i2"><list id="i3"/><list id="i3"><reference id="i3"/></list></list></marshal>',
      ),
    ).toThrow(/two containers have the id "i3"/);
  });

  it("refuses nesting deeper than 64, more than 100,000 elements and integers of more than 4300 digits", () => {
    const nested = (depth: number) =>
      `<marshal>${'<list id="i">'.repeat(depth).replace(/id="i"/g, () => `id="i${Math.random()}"`)}${"</list>".repeat(depth)}</marshal>`;
    expect(() => unmarshal(nested(64))).not.toThrow();
    expect(() => unmarshal(nested(100))).toThrow(/deeper than 64 levels/);
    expect(() => unmarshal(`<marshal><list id="i2">${"<none/>".repeat(100_000)}</list></marshal>`)).toThrow(
      /more than 100000 elements/,
    );
    expect(unmarshal(`<marshal><long>${"9".repeat(4300)}</long></marshal>`)).toBe(BigInt("9".repeat(4300)));
    expect(() => unmarshal(`<marshal><long>${"9".repeat(4302)}</long></marshal>`)).toThrow(
      /more than 4300 digits/,
    );
  });

  it("refuses DOCTYPE declarations: no entity of the document's own is ever expanded", () => {
    const laughs =
      '<!DOCTYPE marshal [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><marshal><string>&b;</string></marshal>';
    expect(() => unmarshal(laughs)).toThrow(/DOCTYPE/);
  });

  it("reads what other XML writers may add: declaration, comments, CDATA, quotes, line ends", () => {
    expect(
      unmarshal(
        "\uFEFF<?xml version='1.0' encoding='utf-8'?>\r\n<!-- from lxml -->\n<marshal><list id='i2'>\n  <string>a\r\nb&#13;&#x1F600;&#233;</string>\n  <string><![CDATA[<x>&amp;]]></string><string/></list></marshal>\n",
      ),
    ).toEqual(["a\nb\r😀é", "<x>&", ""]);
  });

  // Where saxes is lenient (lone surrogates, which XML excludes), the codec is stricter.
  it("accepts and refuses the same documents as a conforming XML parser (saxes)", () => {
    expect(() => unmarshal("<marshal><string>\uD800</string></marshal>")).toThrow(/U\+D800/);
    // Found by this property: a processing instruction's target must be a name.
    expect(() => unmarshal("<marshal><?&amp;pi x?><string/></marshal>")).toThrow(/valid target name/);
    expect(unmarshal("<marshal><?pi x?><string/></marshal>")).toBe("");
    const valid = marshal({
      key: ["v&<>\"'é😀", 1, new PyFloat(1.5), null, new PyTuple([true])],
      "\r": [[]],
    });
    const edits = fc.constantFrom(
      "",
      "<",
      ">",
      "&",
      "&amp;",
      "&#0;",
      "&#65;",
      "&#xD800;",
      "&bogus;",
      "]]>",
      "<!-- c -->",
      "<![CDATA[x]]>",
      "<?pi x?>",
      "\u0001",
      "\r\n",
      "'",
      '"',
      "/>",
      "</",
      " a='1'",
    );
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(valid.length), edits), { minLength: 1, maxLength: 3 }),
        (changes) => {
          const xml = changes.reduce(
            (text, [at, insert]) => text.slice(0, at) + insert + text.slice(at),
            valid,
          );
          let wellFormed = true;
          const parser = new SaxesParser({ xmlns: false });
          parser.on("error", () => {
            wellFormed = false;
          });
          try {
            parser.write(xml).close();
          } catch {
            wellFormed = false;
          }
          let ours: "decoded" | "malformed" | "refused" = "decoded";
          try {
            unmarshal(xml);
          } catch (error) {
            expect(error).toBeInstanceOf(MarshalError);
            ours = /^malformed XML/.test((error as Error).message) ? "malformed" : "refused";
          }
          if (!wellFormed) expect(ours, xml).not.toBe("decoded");
          if (ours === "malformed") expect(wellFormed, xml).toBe(false);
        },
      ),
      { numRuns: 3000 },
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
