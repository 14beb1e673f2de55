import { join } from "node:path";
import { execa } from "execa";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { dictToInstanceXml, instanceXmlToDict } from "../../protocol/instance-xml.js";
import { MarshalError } from "../../protocol/xml-marshaller.js";
import { describeWith, requires } from "../support/requirements.js";

const xmlText = fc.string({
  unit: fc.oneof(
    fc.constantFrom("&", "<", ">", '"', "'", "\r", "\n", "\t", "é", "😀", " ", "a", "_", "{", "}"),
  ),
});

describe("instance XML codec", () => {
  it("writes parameters as slapos.util.dict2xml does", () => {
    expect(dictToInstanceXml({ b: 'x<&>"é', a: "1", c: null })).toBe(
      `<?xml version='1.0' encoding='utf-8'?>\n<instance>\n  <parameter id="a">1</parameter>\n  <parameter id="b">x&lt;&amp;&gt;"é</parameter>\n  <parameter id="c">None</parameter>\n</instance>\n`,
    );
    expect(dictToInstanceXml({})).toBe(`<?xml version='1.0' encoding='utf-8'?>\n<instance/>\n`);
  });

  it("reads repeated ids joined by a space and empty elements as null", () => {
    expect(
      instanceXmlToDict(
        '<?xml version="1.0" encoding="utf-8"?><instance><parameter id="a">x</parameter><parameter id="a">y</parameter><parameter id="e"/></instance>',
      ),
    ).toEqual({ a: "x y", e: null });
    expect(instanceXmlToDict("")).toEqual({});
  });

  it("round-trips any parameters, and refuses malformed XML with a MarshalError", () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          xmlText,
          xmlText.filter((value) => value !== ""),
          { maxKeys: 6 },
        ),
        (parameters) => {
          expect(instanceXmlToDict(dictToInstanceXml(parameters))).toEqual(parameters);
        },
      ),
      { numRuns: 300 },
    );
    expect(() => instanceXmlToDict("<instance><parameter id='a'>x</instance>")).toThrow(MarshalError);
  });
});

describeWith(
  [requires.env("SLAPOS_VENV", "the real slapos.core (slapos.util) from PyPI")],
  "instance XML codec against slapos.util",
  () => {
    it("writes the same text as dict2xml, and xml2dict reads ours unchanged", async () => {
      const dicts = fc.sample(
        fc.dictionary(
          xmlText,
          xmlText.filter((value) => value !== ""),
          { maxKeys: 6 },
        ),
        {
          numRuns: 300,
          seed: 7,
        },
      );
      const cases = dicts.map((dict) => ({ dict, xml: dictToInstanceXml(dict) }));
      const peer = await execa(
        `${process.env.SLAPOS_VENV}/bin/python`,
        [join(import.meta.dirname, "instance_xml_peer.py")],
        {
          input: JSON.stringify(cases),
        },
      );
      const answers = JSON.parse(peer.stdout) as { xml: string; dict: Record<string, string | null> }[];
      expect(answers).toHaveLength(cases.length);
      answers.forEach((answer, index) => {
        expect(answer.xml, `case #${index}`).toBe(cases[index]?.xml);
        expect(answer.dict, `case #${index}`).toEqual(cases[index]?.dict);
      });
    });
  },
);
