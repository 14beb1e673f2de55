// An error that reaches the log must not carry the values it was about: drizzle's query errors
// quote every bound parameter (instance parameters, connection parameters, private keys) in
// their message and `params`, PGlite's carry `params` too, and Postgres puts whole rows in
// `detail` ("Failing row contains (...)") and input values in some messages.

/** What the master logs about a failure. */
export interface LoggableError {
  name: string;
  message: string;
  /** SQLSTATE for a database error, errno name (ECONNREFUSED...) for a system one. */
  code?: string;
  severity?: string;
  routine?: string;
  /** The database objects involved: names from the schema, never values. */
  constraint?: string;
  table?: string;
  column?: string;
  stack?: string;
  cause?: LoggableError;
}

const MAX_CAUSES = 5;

/** Turns anything thrown into a log object that holds no value from the failed statement. */
export function loggableError(error: unknown): LoggableError {
  return describe(error, undefined, new Set(), 0);
}

function describe(
  error: unknown,
  outerQuery: string | undefined,
  seen: Set<unknown>,
  depth: number,
): LoggableError {
  if (!(error instanceof Error)) {
    return { name: typeof error, message: "a thrown value that is not an Error (not logged)" };
  }
  seen.add(error);
  const fields = error as unknown as Record<string, unknown>;
  const query = text(fields.query) ?? outerQuery;
  const database = isDatabaseError(fields);
  const identifiers = new Set(
    [
      fields.constraint,
      fields.constraint_name,
      fields.table,
      fields.table_name,
      fields.column,
      fields.column_name,
      fields.schema,
      fields.schema_name,
      fields.dataType,
      fields.data_type_name,
    ].filter((value): value is string => typeof value === "string"),
  );
  let message = withoutParams(String(error.message ?? ""));
  // Postgres quotes input in some messages (`invalid input syntax for type uuid: "..."`), and
  // JSON.parse quotes the text it was given.
  if (database || error instanceof SyntaxError) message = maskQuoted(message, identifiers, query);
  const result: LoggableError = { name: error.name, message };
  const code = text(fields.code);
  if (code && (database || /^E[A-Z0-9_]+$/.test(code))) result.code = code;
  if (database) {
    const severity = text(fields.severity);
    const routine = text(fields.routine);
    const constraint = text(fields.constraint_name) ?? text(fields.constraint);
    const table = text(fields.table_name) ?? text(fields.table);
    const column = text(fields.column_name) ?? text(fields.column);
    if (severity) result.severity = severity;
    if (routine) result.routine = routine;
    if (constraint) result.constraint = constraint;
    if (table) result.table = table;
    if (column) result.column = column;
  }
  const frames = String(error.stack ?? "")
    .split("\n")
    .filter((line) => /^\s+at /.test(line));
  if (frames.length > 0) result.stack = [`${error.name}: ${message}`, ...frames].join("\n");
  if (error.cause !== undefined && !seen.has(error.cause) && depth < MAX_CAUSES) {
    result.cause = describe(error.cause, query, seen, depth + 1);
  }
  return result;
}

/** postgres.js's PostgresError and PGlite's DatabaseError: a SQLSTATE and a severity. */
function isDatabaseError(fields: Record<string, unknown>): boolean {
  return /^[0-9A-Z]{5}$/.test(text(fields.code) ?? "") && typeof fields.severity === "string";
}

function text(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/** Drops drizzle's "params: ..." tail (and any such tail): the statement's bound values. */
function withoutParams(message: string): string {
  return message.replace(/(^|\n)\s*params:[\s\S]*$/i, "").trimEnd();
}

/**
 * Masks every double-quoted part of a message except names of database objects (those the
 * error names, or that the statement itself quotes as identifiers), and raw bytes (`0x00`).
 */
function maskQuoted(message: string, identifiers: Set<string>, query: string | undefined): string {
  return message
    .replace(/"([^"]*)"/g, (whole, inner: string) =>
      identifiers.has(inner) || query?.includes(whole) ? whole : '"…"',
    )
    .replace(/0x[0-9a-f]{2}(\s+0x[0-9a-f]{2})*/gi, "0x…");
}

const SECRET_KEYS = [
  "key",
  "privateKey",
  "privateKeyPem",
  "private_key_pem",
  "certificate",
  "token",
  "password",
  "connectionParameters",
  "connection_parameters",
  "parameters",
  "params",
  "detail",
];

/**
 * pino's `redact` option: a second net, should a log call ever pass such a field itself
 * (pino's wildcards match one level each, so each key is listed down to four levels).
 */
export const LOG_REDACTION = {
  paths: SECRET_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`, `*.*.*.${key}`]),
  censor: "[redacted]",
};
