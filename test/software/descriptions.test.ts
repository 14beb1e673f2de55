import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { execa } from "execa";
import { expect, it } from "vitest";
import { describeWith, requires } from "../support/requirements.js";

/**
 * Each release's software.cfg.json against its software.cfg: the parameters it describes are the
 * ones the instance profile reads (same names, same defaults), the values it says are published
 * are the ones the profile writes, and every schema is one a JSON Schema validator accepts.
 * What a running instance publishes is checked against it where the release is deployed
 * (postgresql.test.ts).
 */
const RELEASES = {
  "hello-web": {
    /** The keys of the JSON object written by `[publish]`. */
    published: (profile: string) =>
      Object.keys(JSON.parse(/^ *\[publish\][\s\S]*?inline = (\{.*\})$/m.exec(profile)?.[1] ?? "{}")),
  },
  postgresql: {
    /** The keys of the `values` dictionary the instance code publishes. */
    published: (profile: string) =>
      [
        ...(/^ {6}values = \{\n([\s\S]*?)\n {6}\}/m.exec(profile)?.[1] ?? "").matchAll(
          /^ {10}"([a-z0-9-]+)":/gm,
        ),
      ].map((match) => match[1] ?? ""),
  },
};

interface SoftwareType {
  title: string;
  description: string;
  index: number;
  request: { properties: Record<string, { default?: string }> };
  response: { required: string[]; properties: Record<string, unknown> };
}

/** The `configuration.NAME = DEFAULT` lines of the instance profile's `[slap-instance]` defaults. */
function profileDefaults(profile: string): Record<string, string> {
  const section = /^ {2}\[slap-instance\]\n((?: {2}\S.*\n)+)/m.exec(profile)?.[1] ?? "";
  return Object.fromEntries(
    [...section.matchAll(/^ {2}configuration\.(\S+) = (.*)$/gm)].map((match) => [match[1], match[2]]),
  );
}

describeWith(
  [requires.env("SLAPOS_VENV", "the node's Python environment, whose jsonschema checks the schemas")],
  "software.cfg.json of the example releases",
  () => {
    for (const [name, release] of Object.entries(RELEASES)) {
      it(`${name}: describes the parameters and published values its profile has, in valid JSON Schema`, async () => {
        const directory = resolve("examples/software", name);
        const profile = await readFile(`${directory}/software.cfg`, "utf8");
        const description = JSON.parse(await readFile(`${directory}/software.cfg.json`, "utf8"));
        expect(description).toMatchObject({
          name: expect.any(String),
          description: expect.any(String),
          serialisation: "xml",
        });
        const types = Object.values(description["software-type"]) as SoftwareType[];
        expect(types.length).toBeGreaterThan(0);
        expect(types.map((type) => type.index).sort()).toEqual(types.map((_, index) => index));

        const defaults = profileDefaults(profile);
        expect(Object.keys(defaults).length).toBeGreaterThan(0);
        const published = release.published(profile);
        expect(published.length).toBeGreaterThan(0);
        for (const type of types) {
          expect(type).toMatchObject({ title: expect.any(String), description: expect.any(String) });
          const described = Object.fromEntries(
            Object.entries(type.request.properties).map(([key, schema]) => [key, schema.default]),
          );
          expect(described).toEqual(defaults);
          expect(type.response.required.sort()).toEqual([...published].sort());
          expect(Object.keys(type.response.properties).sort()).toEqual([...published].sort());
        }

        const check = await execa(
          `${process.env.SLAPOS_VENV}/bin/python`,
          [
            "-c",
            [
              "import json, sys, jsonschema",
              "description, defaults = json.load(sys.stdin)",
              "for kind in description['software-type'].values():",
              "    for part in ('request', 'response'):",
              "        jsonschema.Draft202012Validator.check_schema(kind[part])",
              "    jsonschema.validate(defaults, kind['request'])",
              "    jsonschema.validate({}, kind['request'])",
              "    try:",
              "        jsonschema.validate({'no-such-parameter': 'x'}, kind['request'])",
              "        sys.exit('an unknown parameter passed the request schema')",
              "    except jsonschema.ValidationError:",
              "        pass",
            ].join("\n"),
          ],
          { input: JSON.stringify([description, defaults]), reject: false },
        );
        expect(check.stderr).toBe("");
        expect(check.exitCode).toBe(0);
      });
    }
  },
);
