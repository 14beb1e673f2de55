import { randomBytes } from "node:crypto";
import { Agent, request } from "undici";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { MasterClient } from "../../protocol/client.js";
import { marshal } from "../../protocol/xml-marshaller.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { type HttpsMaster, startHttpsMaster } from "./https-master.js";

// Small bodies built to cost the master far more than their size: xml_marshaller reference bombs
// and cycles, deeply nested JSON, NULs and oversized fields. Each must be refused with a 4xx that
// names the field, without the work (or the 500) it was built to cause.

const RELEASE = "https://example.com/software/web/software.cfg";

/**
 * A dictionary {[key]: [l0, l1, ... ln]} where l0 holds a `leafLength`-character string and each
 * l(k) holds two references to l(k-1): ~2 KB of XML spelling 2^(depth+1) copies of the leaf.
 */
export function referenceBomb(depth: number, leafLength = 1000, key = "p"): string {
  const id = (level: number) => `i${level + 4}`;
  let lists = `<list id="${id(0)}"><string>${"x".repeat(leafLength)}</string></list>`;
  for (let level = 1; level <= depth; level++) {
    const previous = `<reference id="${id(level - 1)}"/>`;
    lists += `<list id="${id(level)}">${previous}${previous}</list>`;
  }
  return `<marshal><dictionary id="i2"><string>${key}</string><list id="i3">${lists}</list></dictionary></marshal>`;
}

/** A list that holds itself: Python's marshaller writes one for `l = []; l.append(l)`. */
const SELF_REFERENCE =
  '<marshal><dictionary id="i2"><string>p</string><list id="i3"><reference id="i3"/></list></dictionary></marshal>';

const LONG_IN_LIST =
  '<marshal><dictionary id="i2"><string>p</string><list id="i3"><long>1000000000000000000000000</long></list></dictionary></marshal>';

/** A computer whose 1000 partitions are one dictionary, whose 1000 addresses are one dictionary. */
function partitionListBomb(reference: string): string {
  const address = '<dictionary id="i6"><string>addr</string><string>10.0.0.1</string></dictionary>';
  const addresses = `<list id="i5">${address}${'<reference id="i6"/>'.repeat(999)}</list>`;
  const partition = `<dictionary id="i4"><string>address_list</string>${addresses}<string>reference</string><string>slappart0</string></dictionary>`;
  return `<marshal><dictionary id="i2"><string>partition_list</string><list id="i3">${partition}${'<reference id="i4"/>'.repeat(999)}</list><string>reference</string><string>${reference}</string></dictionary></marshal>`;
}

for (const kind of testDatabaseKinds) {
  describeWith(kind.requirements, `hostile bodies are refused up front, on ${kind.name}`, () => {
    let master: HttpsMaster;
    let admin: MasterClient;
    let node: { id: string; client: MasterClient };
    let partition: string;

    const request_ = (fields: Record<string, string>) =>
      master.slap(admin, "/requestComputerPartition", {
        software_release: RELEASE,
        software_type: "default",
        partition_reference: "hostile",
        filter_xml: marshal({ computer_guid: node.id }),
        ...fields,
      });

    beforeAll(async () => {
      master = await startHttpsMaster(kind);
      admin = master.admin;
      node = await master.node(admin, ["slappart0", "slappart1", "slappart2", "slappart3"]);
      const published = await admin.requestInstance({
        title: "publisher",
        softwareReleaseUrl: RELEASE,
        sla: { computer_guid: node.id },
      });
      partition = published.partitionReference ?? "";
    });
    afterAll(async () => {
      await master?.close();
    });

    it("keeps a normal SLAP request's string parameters, and a `_` key holding JSON", async () => {
      const serialised = JSON.stringify({ nested: { list: [1, 2] }, text: "a<b>&c" });
      const answer = await request_({
        partition_reference: "well-formed",
        partition_parameter_xml: marshal({ name: "blog", port: "8080", text: "a+b c&d=é%20" }),
      });
      expect(answer.status).toBe(200);
      const json = await request_({
        partition_reference: "serialised",
        partition_parameter_xml: marshal({ _: serialised }),
      });
      expect(json.status).toBe(200);
      const instances = await admin.listInstances();
      expect(instances.find((each) => each.title === "well-formed")?.parameters).toEqual({
        name: "blog",
        port: "8080",
        text: "a+b c&d=é%20",
      });
      expect(instances.find((each) => each.title === "serialised")?.parameters).toEqual({ _: serialised });
    });

    // "region" is an SLA key the master knows: the bomb is not refused for its key.
    for (const [field, key] of [
      ["partition_parameter_xml", "p"],
      ["filter_xml", "region"],
    ]) {
      it(`refuses a reference bomb in ${field}, naming it`, async () => {
        const answer = await request_({
          partition_reference: `bomb-${field}`,
          [field as string]: referenceBomb(16, 1000, key),
        });
        expect(answer.status).toBe(400);
        expect(answer.text).toContain(field);
      });
    }

    it("refuses a reference bomb in connection_xml, naming it", async () => {
      const answer = await master.slap(admin, "/setComputerPartitionConnectionXml", {
        computer_id: node.id,
        computer_partition_id: partition,
        connection_xml: referenceBomb(16),
      });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("connection_xml");
    });

    it("refuses the 17-deep reference bomb, naming the field", async () => {
      const answer = await request_({ partition_parameter_xml: referenceBomb(17) });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("partition_parameter_xml");
    });

    it("refuses a self-referencing list, naming the field", async () => {
      const answer = await request_({ partition_parameter_xml: SELF_REFERENCE });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("partition_parameter_xml");
    });

    it("refuses a <long> inside a list, naming the field", async () => {
      const answer = await request_({ partition_parameter_xml: LONG_IN_LIST });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("partition_parameter_xml");
      expect(answer.text).toMatch(/string|scalar/);
    });

    it("refuses a computer description that expands a million addresses, unwalked", async () => {
      const answer = await master.slap(admin, "/loadComputerConfigurationFromXML", {
        xml: partitionListBomb(node.id),
      });
      expect(answer.status).toBe(400);
      expect(answer.text).toMatch(/\bxml\b/);
      expect(answer.text).toMatch(/more than [\d,]+ values/);
    });

    it("refuses a computer description whose reference is 9,000 characters, naming the field", async () => {
      // Incompressible, as a database index would otherwise shrink it below its row limit.
      const reference = randomBytes(6750).toString("base64");
      const answer = await master.slap(admin, "/loadComputerConfigurationFromXML", {
        xml: marshal({ reference, partition_list: [] }),
      });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("xml");
      expect(answer.text).toContain("200");
    });

    it("still loads a computer description of 200 partitions", async () => {
      const layout = {
        reference: node.id,
        partition_list: Array.from({ length: 200 }, (_, index) => ({
          reference: `slappart${index}`,
          tap: { name: `slaptap${index}` },
          address_list: [
            { addr: `10.0.${Math.floor(index / 200)}.${10 + (index % 200)}`, netmask: "255.255.255.0" },
            { addr: `fd00::${(index + 16).toString(16)}`, netmask: "64" },
          ],
        })),
      };
      const answer = await master.slap(admin, "/loadComputerConfigurationFromXML", { xml: marshal(layout) });
      expect(answer).toEqual({ status: 200, text: "done" });
    });

    it("refuses 2 MB of nested JSON to the unauthenticated /api/v1/register", async () => {
      const depth = 1024 * 1024;
      const anonymous = new Agent({ connect: { ca: admin.connection.ca } });
      const response = await request(new URL("/api/v1/register", master.master.url), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: `${"[".repeat(depth)}${"]".repeat(depth)}`,
        dispatcher: anonymous,
      });
      const body = (await response.body.json()) as { error: { message: string; field?: string } };
      await anonymous.close();
      expect(response.statusCode).toBe(400);
      expect(body.error.field).toBe("body");
      expect(body.error.message).toMatch(/nest/);
    });

    it("refuses a \\u0000 escape in a JSON body, but not an escaped backslash before u0000", async () => {
      const anonymous = new Agent({ connect: { ca: admin.connection.ca } });
      const register = async (body: string) => {
        const response = await request(new URL("/api/v1/register", master.master.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
          dispatcher: anonymous,
        });
        return {
          status: response.statusCode,
          body: (await response.body.json()) as { error: { message: string } },
        };
      };
      const nul = await register('{"token": "a\\u0000b"}');
      expect(nul.status).toBe(400);
      expect(nul.body.error.message).toContain("NUL");
      // `\\u0000` is a backslash then the text u0000: the token is merely unknown.
      const text = await register('{"token": "a\\\\u0000b"}');
      expect(text.status).toBeGreaterThanOrEqual(400);
      expect(text.status).toBeLessThan(500);
      expect(text.body.error.message).not.toContain("NUL");
      await anonymous.close();
    });

    it("refuses a NUL in a SLAP form field, naming the field", async () => {
      const answer = await request_({ partition_reference: "nul\u0000title" });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("partition_reference");
      expect(answer.text).toContain("NUL");
    });

    it("refuses a 9,000-character title, naming the field and its limit", async () => {
      const answer = await request_({ partition_reference: "t".repeat(9000) });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("partition_reference");
      expect(answer.text).toContain("200");
    });

    it("refuses a 9,000-character software release URL to requestComputerPartition", async () => {
      const answer = await request_({ software_release: `https://example.com/${"u".repeat(9000)}` });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("software_release");
      expect(answer.text).toContain("2048");
    });

    it("refuses a 9,000-character URL to supplySupply", async () => {
      const answer = await master.slap(admin, "/supplySupply", {
        url: `https://example.com/${"u".repeat(9000)}`,
        computer_id: node.id,
      });
      expect(answer.status).toBe(400);
      expect(answer.text).toContain("url");
      expect(answer.text).toContain("2048");
    });
  });
}
