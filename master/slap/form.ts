import type { Context } from "hono";
import { type Marshallable, PyFloat, PyObject, PyTuple, unmarshal } from "../../protocol/xml-marshaller.js";
import type { MasterEnv } from "../api/context.js";
import { invalid } from "../model/errors.js";

// What SLAP callers send: form fields and query strings, some holding marshalled XML.

type SlapContext = Context<MasterEnv>;
export type Fields = (name: string) => string | undefined;

/** Form or query values, with the Python client's literal "None" read as absent. */
export function fieldsOf(values: Record<string, unknown>): Fields {
  return (name) => {
    const value = values[name];
    if (typeof value !== "string" || value === "None" || value === "none") return undefined;
    return value;
  };
}

export async function form(c: SlapContext): Promise<Fields> {
  return fieldsOf(await c.req.parseBody());
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

/** A dict of strings from marshalled XML (parameters, SLA, connection parameters). */
export function stringDict(field: string, xmlText: string | undefined): Record<string, string> {
  if (xmlText === undefined || xmlText === "") return {};
  const decoded = unmarshal(xmlText);
  if (decoded === null) return {};
  const value = asDict(decoded, field);
  const result: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    result[key] = entry === null ? "None" : typeof entry === "object" ? JSON.stringify(entry) : String(entry);
  }
  return result;
}
