import { randomBytes } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32: no I, L, O, U

/** A random reference in SlapOS style, e.g. `COMP-7G3KQ2XM9T`. */
export function newId(prefix: "PERSON" | "ORG" | "COMP" | "SOFTINST"): string {
  const bytes = randomBytes(10);
  let id = "";
  for (const byte of bytes) id += ALPHABET[byte % 32];
  return `${prefix}-${id}`;
}
