import type { Context } from "hono";
import { InstanceRequest, SoftwareReport, SupplyRequest } from "../../protocol/api.js";
import {
  MarshalError,
  type Marshallable,
  PyFloat,
  PyObject,
  PyTuple,
  pythonFloatRepr,
  unmarshal,
} from "../../protocol/xml-marshaller.js";
import type { MasterEnv } from "../api/context.js";
import { invalid } from "../model/errors.js";

// What SLAP callers send: form fields and query strings, some holding marshalled XML. Every
// field is read here, so that SLAP input is held to the JSON API's limits in one place.

type SlapContext = Context<MasterEnv>;
export type Fields = (name: string) => string | undefined;

/** The largest length a zod string schema (optional or not) accepts. */
function maxLengthOf(schema: { maxLength?: number | null; unwrap?: () => unknown }): number {
  const inner = (schema.unwrap ? schema.unwrap() : schema) as { maxLength?: number | null };
  if (typeof inner.maxLength !== "number") throw new Error("the schema has no maximum length");
  return inner.maxLength;
}

/** References and ids (computers, partitions, instances): those SlapOS makes are under 64. */
export const REFERENCE_LENGTH = 200;

/**
 * Each field's largest length, the JSON API's where it has the same field. Fields not listed
 * hold marshalled XML, bounded by the body limit and by the decoder.
 */
const FIELD_LENGTHS: Record<string, number> = {
  partition_reference: maxLengthOf(InstanceRequest.shape.title),
  software_release: maxLengthOf(InstanceRequest.shape.softwareReleaseUrl),
  software_type: maxLengthOf(InstanceRequest.shape.softwareType),
  url: maxLengthOf(SupplyRequest.shape.url),
  error_log: maxLengthOf(SoftwareReport.shape.errorLog),
  computer_id: REFERENCE_LENGTH,
  computer_reference: REFERENCE_LENGTH,
  computer_partition_id: REFERENCE_LENGTH,
  computer_partition_reference: REFERENCE_LENGTH,
  slave_reference: REFERENCE_LENGTH,
  // Marshalled scalars: `<marshal><string>started</string></marshal>`, `<marshal><bool>1</bool></marshal>`.
  state: 1024,
  shared_xml: 1024,
};

function decodeField(name: string, xmlText: string): Marshallable {
  try {
    return unmarshal(xmlText);
  } catch (error) {
    if (error instanceof MarshalError)
      throw invalid(name, `the field '${name}' is not acceptable xml_marshaller XML: ${error.message}`);
    throw error;
  }
}

/** A field holding marshalled XML, decoded once; a refusal names the field. Absent: undefined. */
export function marshalledField(fields: Fields, name: string): Marshallable | undefined {
  const value = fields(name);
  return value === undefined || value === "" ? undefined : decodeField(name, value);
}

function checkField(name: string, value: string): void {
  // Postgres text cannot hold NUL: refused here rather than failing in the database.
  if (value.includes("\0")) {
    throw invalid(name, `the field '${name}' contains a NUL character: remove it and send the request again`);
  }
  const limit = FIELD_LENGTHS[name];
  if (limit !== undefined && value.length > limit) {
    throw invalid(
      name,
      `the field '${name}' is ${value.length} characters long; at most ${limit} are accepted`,
    );
  }
}

/**
 * Form or query values, with the Python client's literal "None" read as absent. Each field is
 * checked (NUL, length) the first time it is read.
 */
export function fieldsOf(values: Record<string, unknown>): Fields {
  const checked = new Set<string>();
  return (name) => {
    const value = values[name];
    if (typeof value !== "string" || value === "None" || value === "none") return undefined;
    if (!checked.has(name)) {
      checkField(name, value);
      checked.add(name);
    }
    return value;
  };
}

export async function form(c: SlapContext): Promise<Fields> {
  const type = c.req.header("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") return fieldsOf(await c.req.parseBody());
  return fieldsOf(urlEncoded(await c.req.arrayBuffer()));
}

const PLUS = 0x2b;
const SPACE = 0x20;

/**
 * A form body's fields, the last of a repeated name winning (as parseBody does), read with the
 * native decodeURIComponent: URLSearchParams walks the characters in JavaScript (~80 ms for a
 * 4 MB form of marshalled XML, ~400 ms for 4 MB of '+'). A pair decodeURIComponent refuses
 * (a malformed percent-encoding) is read leniently by URLSearchParams, as before.
 */
function urlEncoded(body: ArrayBuffer): Record<string, string> {
  // '+' is a space; a '+' of the data itself arrives as %2B. Bytes, not a regular expression:
  // a global replace of 4 million '+' takes half a second.
  const bytes = new Uint8Array(body.slice(0));
  for (let index = bytes.indexOf(PLUS); index >= 0; index = bytes.indexOf(PLUS, index + 1))
    bytes[index] = SPACE;
  const fields: Record<string, string> = Object.create(null);
  for (const pair of new TextDecoder().decode(bytes).split("&")) {
    if (pair === "") continue;
    const equals = pair.indexOf("=");
    try {
      const name = decodeURIComponent(equals < 0 ? pair : pair.slice(0, equals));
      fields[name] = equals < 0 ? "" : decodeURIComponent(pair.slice(equals + 1));
    } catch {
      for (const [name, value] of new URLSearchParams(pair)) fields[name] = value;
    }
  }
  return fields;
}

export function query(c: SlapContext): Fields {
  return fieldsOf(c.req.query());
}

export function required(fields: Fields, name: string): string {
  const value = fields(name);
  if (value === undefined || value === "") throw invalid(name, `the field '${name}' is required`);
  return value;
}

export type Dict = { [key: string]: Marshallable };

/** A decoded value that must be a dictionary. */
export function asDict(value: Marshallable, field: string): Dict {
  if (
    typeof value !== "object" ||
    value === null ||
    Array.isArray(value) ||
    value instanceof PyObject ||
    value instanceof PyTuple ||
    value instanceof PyFloat
  ) {
    throw invalid(field, `'${field}' must be a marshalled dictionary`);
  }
  return value;
}

function kindOf(value: Marshallable): string {
  if (Array.isArray(value)) return "a list";
  if (value instanceof PyTuple) return "a tuple";
  if (value instanceof PyObject) return `a ${value.className} object`;
  return "a dictionary";
}

/**
 * A dict of strings from marshalled XML (parameters, SLA, connection parameters). Values are
 * scalars, as SlapOS's own are: strings, or structured data serialised as JSON in a string
 * (by convention under the key `_`).
 */
export function stringDict(field: string, xmlText: string | undefined): Record<string, string> {
  if (xmlText === undefined || xmlText === "") return {};
  const decoded = decodeField(field, xmlText);
  if (decoded === null) return {};
  const value = asDict(decoded, field);
  const result: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (entry === null) result[key] = "None";
    else if (entry instanceof PyFloat) result[key] = pythonFloatRepr(entry.value);
    else if (typeof entry === "object") {
      throw invalid(
        field,
        `'${field}' maps '${key.slice(0, 100)}' to ${kindOf(entry)}: values must be strings or numbers; send structured parameters as one JSON string, e.g. under the key '_'`,
      );
    } else result[key] = String(entry);
  }
  return result;
}
