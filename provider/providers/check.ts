import type { z } from "zod";

/** What `check` receives for an input whose value is not known yet (during a preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export interface Failure {
  property: string;
  reason: string;
}

/**
 * A string map (parameters, SLA): numbers and booleans become strings, as the master stores
 * them; anything else is refused naming the key.
 */
export function checkRecord(
  property: string,
  value: unknown,
  failures: Failure[],
): Record<string, string> | undefined {
  if (value === undefined || value === null || value === UNKNOWN)
    return value === UNKNOWN ? (value as never) : undefined;
  if (typeof value !== "object" || Array.isArray(value)) {
    failures.push({ property, reason: `${property} must be a map of strings` });
    return undefined;
  }
  const record: Record<string, string> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item === "string" || item === UNKNOWN) record[key] = item;
    else if (typeof item === "number" || typeof item === "boolean") record[key] = String(item);
    else
      failures.push({
        property: `${property}.${key}`,
        reason: `${property}.${key} must be a string, a number or a boolean`,
      });
  }
  return record;
}

/** Dynamic providers get no code with an import (`pulumi import`, `.get`): say what works instead. */
export const IMPORT_UNSUPPORTED =
  "this resource cannot be imported (Pulumi gives dynamic providers no code for it); adopt an existing object instead by declaring the resource with its identity (an instance's title, a computer's computerId, a release's url and computer): creating it takes the existing object over";

/** Whether a value is, or holds, a value not known yet. */
export function holdsUnknown(value: unknown): boolean {
  return JSON.stringify(value ?? null).includes(UNKNOWN);
}

/**
 * The keys whose change replaces the resource. A value not known yet during a preview (an output
 * of a resource being updated) is not a replacement: it is shown as a possible change, and the
 * real value decides during the update.
 */
export function replacedKeys(changes: [key: string, old: unknown, new: unknown][]): {
  replaces: string[];
  unknown: boolean;
} {
  const replaces: string[] = [];
  let unknown = false;
  for (const [key, old, current] of changes) {
    if (holdsUnknown(current)) unknown = true;
    else if (!same(old, current)) replaces.push(key);
  }
  return { replaces, unknown };
}

/** Values compared as the state holds them: map keys in any order, absent and undefined alike. */
export function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, item) =>
    item && typeof item === "object" && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([x], [y]) => x.localeCompare(y)))
      : item,
  );
}

/** Whether any of the in-place keys changed (a value not known yet may have). */
export function anyChanged(pairs: [old: unknown, new: unknown][]): boolean {
  return pairs.some(([old, current]) => holdsUnknown(current) || !same(old, current));
}

/**
 * An object was created but did not become ready: the engine keeps it in the state (so a later
 * update retries, and a delete removes it) when the error carries its id and outputs.
 */
export function createdButNotReady(error: unknown, id: string, outputs: object): Error {
  const failure = error instanceof Error ? error : new Error(String(error));
  return Object.assign(failure, { id, properties: outputs, reasons: [failure.message] });
}

/**
 * The master's own rules for a body or a value (protocol/api.ts), applied in the preview: what
 * the master would refuse is refused before anything is created. Values not known yet are left
 * out; each failure names the resource's input (`names` maps the body's keys to the inputs'),
 * which the engine shows next to the reason.
 */
export function schemaFailures(
  schema: z.ZodType,
  value: unknown,
  names: Record<string, string> = {},
): Failure[] {
  const known =
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).filter(([, item]) => !holdsUnknown(item)))
      : value;
  if (holdsUnknown(known)) return [];
  const result = schema.safeParse(known);
  if (result.success) return [];
  return result.error.issues.map((issue) => {
    const [head, ...rest] = issue.path.map(String);
    const property = head === undefined ? "" : [names[head] ?? head, ...rest].join(".");
    return { property, reason: issue.message };
  });
}
