// The xml_marshaller format of the classic SLAP API, byte-compatible with the Python original
// (slapos.core's dependency `xml_marshaller`): `<marshal>` root, sorted dictionary keys, `iN` ids
// numbered depth-first from i2, strings escaped twice, non-ASCII as decimal character references.

/** A Python tuple (`<tuple>`): kept apart from lists, which Python distinguishes. */
export class PyTuple {
  constructor(readonly items: Marshallable[]) {}
}

/** A Python float (`<float>`); plain JS numbers are Python ints. */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** The only classes SlapOS marshals; anything else is refused both ways (slapos.util's filter). */
export const ALLOWED_CLASSES = [
  "Computer",
  "ComputerPartition",
  "SoftwareRelease",
  "SoftwareInstance",
] as const;
export type AllowedClass = (typeof ALLOWED_CLASSES)[number];
const SLAP_MODULE = "slapos.slap.slap";

/** An instance of one of the four `slapos.slap.slap` classes: constructor args and state. */
export class PyObject {
  constructor(
    readonly className: AllowedClass,
    readonly args: Marshallable[],
    readonly state: { [key: string]: Marshallable },
  ) {}
}

export type Marshallable =
  | null
  | boolean
  | number
  | bigint
  | string
  | PyFloat
  | PyTuple
  | PyObject
  | Marshallable[]
  | { [key: string]: Marshallable };

/** Input the codec refuses, naming what and where. */
export class MarshalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MarshalError";
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** Python's repr() of a float: shortest round-trip digits, exponent outside [1e-4, 1e16). */
export function pythonFloatRepr(value: number): string {
  if (Number.isNaN(value)) return "nan";
  if (!Number.isFinite(value)) return value > 0 ? "inf" : "-inf";
  if (value === 0) return Object.is(value, -0) ? "-0.0" : "0.0";
  const [mantissa = "", exponentText = "0"] = value.toExponential().split("e");
  const exponent = Number(exponentText);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace("-", "").replace(".", "");
  const sign = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) return `${sign}0.${"0".repeat(-exponent - 1)}${digits}`;
    const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
    const fraction = digits.slice(exponent + 1) || "0";
    return `${sign}${whole}.${fraction}`;
  }
  const shortMantissa = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const exponentSign = exponent < 0 ? "-" : "+";
  return `${sign}${shortMantissa}e${exponentSign}${String(Math.abs(exponent)).padStart(2, "0")}`;
}

/** Characters XML 1.0 (and so lxml) accepts in text; `what` names the text in the error. */
export function assertXmlCompatible(text: string, what = "strings"): void {
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    const allowed =
      code === 0x9 ||
      code === 0xa ||
      code === 0xd ||
      (code >= 0x20 && code <= 0xd7ff) ||
      (code >= 0xe000 && code <= 0xfffd) ||
      (code >= 0x10000 && code <= 0x10ffff);
    if (!allowed) {
      throw new MarshalError(
        `${what} must be XML compatible: U+${code.toString(16).toUpperCase().padStart(4, "0")} cannot be marshalled`,
      );
    }
  }
}

/** The text of a `<string>`: saxutils.escape, then lxml's escaping of the text node. */
function escapeString(text: string): string {
  assertXmlCompatible(text);
  const once = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  let twice = "";
  for (const char of once) {
    const code = char.codePointAt(0) ?? 0;
    if (char === "&") twice += "&amp;";
    else if (char === "<") twice += "&lt;";
    else if (char === ">") twice += "&gt;";
    else if (char === "\r") twice += "&#13;";
    else if (code > 0x7e) twice += `&#${code};`;
    else twice += char;
  }
  return twice;
}

/** Python's ordering of str keys: by code point, not by UTF-16 unit. */
export function compareCodePoints(a: string, b: string): number {
  const left = [...a];
  const right = [...b];
  for (let index = 0; index < Math.min(left.length, right.length); index++) {
    const difference = (left[index]?.codePointAt(0) ?? 0) - (right[index]?.codePointAt(0) ?? 0);
    if (difference !== 0) return difference;
  }
  return left.length - right.length;
}

const LONG_THRESHOLD = 10n ** 24n;

/** Encodes a value exactly as Python's `xml_marshaller.dumps` does. */
export function marshal(value: Marshallable): string {
  let nextId = 1;
  const emitted = new Map<object, string>();
  const container = (tag: string, node: object, children: () => string): string => {
    const seen = emitted.get(node);
    if (seen) return `<reference id="${seen}"/>`;
    nextId += 1;
    const id = `i${nextId}`;
    emitted.set(node, id);
    const inner = children();
    return inner ? `<${tag} id="${id}">${inner}</${tag}>` : `<${tag} id="${id}"/>`;
  };
  const encode = (item: Marshallable): string => {
    if (item === null) return "<none/>";
    if (typeof item === "boolean") return `<bool>${item ? 1 : 0}</bool>`;
    if (typeof item === "number") {
      if (!Number.isSafeInteger(item)) {
        throw new MarshalError(`${item} is not a safe integer: pass a bigint, or a PyFloat for a float`);
      }
      return encode(BigInt(item));
    }
    if (typeof item === "bigint") {
      const tag = (item < 0n ? -item : item) >= LONG_THRESHOLD ? "long" : "int";
      return `<${tag}>${item}</${tag}>`;
    }
    if (typeof item === "string") return `<string>${escapeString(item)}</string>`;
    if (item instanceof PyFloat) return `<float>${pythonFloatRepr(item.value)}</float>`;
    if (item instanceof PyTuple) {
      const inner = item.items.map(encode).join("");
      return inner ? `<tuple>${inner}</tuple>` : "<tuple/>";
    }
    if (item instanceof PyObject) {
      if (!ALLOWED_CLASSES.includes(item.className)) {
        throw new MarshalError(`refusing to marshal class ${String(item.className)}`);
      }
      const seen = emitted.get(item);
      if (seen) return `<reference id="${seen}"/>`;
      nextId += 1;
      const id = `i${nextId}`;
      emitted.set(item, id);
      return `<object id="${id}" module="${SLAP_MODULE}" class="${item.className}">${encode(new PyTuple(item.args))}${encode(item.state)}</object>`;
    }
    if (Array.isArray(item)) return container("list", item, () => item.map(encode).join(""));
    if (typeof item === "object") {
      return container("dictionary", item, () =>
        Object.keys(item)
          .sort(compareCodePoints)
          .map((key) => `${encode(key)}${encode(item[key] as Marshallable)}`)
          .join(""),
      );
    }
    throw new MarshalError(`cannot marshal a value of type ${typeof item}`);
  };
  return `<marshal>${encode(value)}</marshal>`;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * What one decode may cost. References make a value's logical size (what a consumer walking it
 * sees, each reference a copy of its target) exponential in the document's size: these bound the
 * logical size to what a document without references, within the master's 4 MiB body limit,
 * could spell out, so that no body costs its consumer more than that.
 */
export const UNMARSHAL_LIMITS = {
  /** Nesting of elements below <marshal>; SlapOS's own documents nest fewer than 10. */
  depth: 64,
  /** Elements in the document: slapos format describes a partition in about 50. */
  elements: 100_000,
  /** Values in the decoded value, walked as a tree. */
  values: 100_000,
  /** Characters of text (strings, keys, numbers) in the decoded value, walked as a tree. */
  characters: 4 * 1024 * 1024,
  /** Digits of one integer: Python's own default cap on int/str conversion. */
  integerDigits: 4300,
} as const;

interface Size {
  values: number;
  characters: number;
}

interface Frame {
  tag: string;
  id?: string;
  text: string;
  children: Marshallable[];
  /** The decoded container, created on open so that references to it resolve. */
  value?: Marshallable;
  /** Logical size of the value so far: 1 for itself plus its children's. */
  size: Size;
}

const SCALAR_TAGS = new Set(["none", "bool", "int", "long", "float", "string", "unicode", "reference"]);

/**
 * The second unescaping step of the Python reader (saxutils.unescape: &lt;, &gt;, then &amp;,
 * which one pass left to right does alike, as no replacement makes a new reference).
 */
function unescapeString(text: string): string {
  return resolveReferences(text, (name) => SAXUTILS.get(name));
}

const fail = (message: string): never => {
  throw new MarshalError(message);
};

/**
 * Decodes xml_marshaller XML as Python's `xml_marshaller.loads` does, refusing any object whose
 * class is not one of the four SlapOS classes, references to a container not yet closed (cycles,
 * which SlapOS never writes), and documents beyond UNMARSHAL_LIMITS. Stops at the first fault
 * and never throws anything but MarshalError.
 */
export function unmarshal(xml: string): Marshallable {
  const stack: Frame[] = [];
  const byId = new Map<string, Marshallable>();
  /** Sizes of closed containers: a reference costs its target's size; absent while still open. */
  const sizes = new Map<string, Size>();
  let elements = 0;
  let result: Marshallable | undefined;
  let rootSeen = false;

  const open = (name: string, attributes: Attributes) => {
    if (stack.length === 0) {
      if (rootSeen || name !== "marshal") fail(`expected a single <marshal> root, found <${name}>`);
      rootSeen = true;
      stack.push({ tag: "marshal", text: "", children: [], size: { values: 0, characters: 0 } });
      return;
    }
    elements += 1;
    if (elements > UNMARSHAL_LIMITS.elements)
      fail(`the document has more than ${UNMARSHAL_LIMITS.elements} elements`);
    if (stack.length > UNMARSHAL_LIMITS.depth)
      fail(`the document nests deeper than ${UNMARSHAL_LIMITS.depth} levels`);
    const frame: Frame = {
      tag: name,
      text: "",
      children: [],
      id: attributes.id,
      size: { values: 1, characters: 0 },
    };
    switch (name) {
      case "list":
        frame.value = [];
        break;
      case "dictionary":
        frame.value = {};
        break;
      case "object": {
        const className = attributes.class ?? "";
        if (
          attributes.module !== SLAP_MODULE ||
          !(ALLOWED_CLASSES as readonly string[]).includes(className)
        ) {
          fail(`refusing to unmarshal class ${attributes.module}.${className}`);
        }
        frame.value = new PyObject(className as AllowedClass, [], {});
        break;
      }
      case "tuple":
        break;
      default:
        if (!SCALAR_TAGS.has(name)) fail(`unknown element <${name}>`);
    }
    if (frame.id !== undefined && frame.value !== undefined) {
      // A second container under one id would let a reference reach an open one unseen.
      if (byId.has(frame.id)) fail(`two containers have the id "${frame.id}"`);
      byId.set(frame.id, frame.value);
    }
    stack.push(frame);
  };
  // Text between a container's elements is layout: only scalars keep theirs.
  const text = (content: string) => {
    const top = stack[stack.length - 1];
    if (top && SCALAR_TAGS.has(top.tag)) top.text += content;
  };
  const close = () => {
    const frame = stack.pop();
    if (!frame) return;
    const value = closeFrame(frame, byId);
    const parent = stack[stack.length - 1];
    if (!parent) {
      if (frame.children.length !== 1) fail("<marshal> must hold exactly one value");
      result = frame.children[0];
      return;
    }
    const size = sizeOf(frame, value, sizes);
    if (frame.id !== undefined && frame.value !== undefined) sizes.set(frame.id, size);
    parent.size.values += size.values;
    parent.size.characters += size.characters;
    if (parent.size.values > UNMARSHAL_LIMITS.values) {
      fail(
        `the decoded value expands to more than ${UNMARSHAL_LIMITS.values} values (a <reference> counts as a copy of what it points at)`,
      );
    }
    if (parent.size.characters > UNMARSHAL_LIMITS.characters) {
      fail(
        `the decoded value expands to more than ${UNMARSHAL_LIMITS.characters} characters of text (a <reference> counts as a copy of what it points at)`,
      );
    }
    parent.children.push(value);
  };

  try {
    readXml(xml, { open, text, close });
  } catch (error) {
    if (error instanceof MarshalError) throw error;
    throw new MarshalError(`malformed XML: ${(error as Error).message}`);
  }
  if (result === undefined) throw new MarshalError("no <marshal> document");
  return result;
}

// ---------------------------------------------------------------------------------------------
// Reading XML: elements, attributes, text, references, CDATA and comments, as xml_marshaller
// and lxml write them. A scan with indexOf and sticky regular expressions: text is sliced, not
// walked a character at a time as a SAX parser does. Why not saxes (which instance-xml.ts and the
// supervisor client use): the master must decode any body under its 4 MB limit in milliseconds
// without blocking other callers, and saxes takes 75 ms for a 4 MB string, 175-210 ms for 4 MB of
// references (measured on this project's 2-core CI machine), where this reader takes ~3 ms. Its
// verdicts are checked against saxes's on mutated documents (test/protocol/xml-marshaller.test.ts).
// Refused: DOCTYPE and other declarations (no entity expansion), characters XML cannot hold.

type Attributes = { [name: string]: string };

interface XmlHandlers {
  open(name: string, attributes: Attributes): void;
  text(content: string): void;
  close(name: string): void;
}

const NOT_XML_CHARACTER =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters XML cannot hold
  /[\0-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const NAME = "[A-Za-z_:][A-Za-z0-9_.:-]*";
const PROCESSING_INSTRUCTION = new RegExp(`^${NAME}(?:[ \\t\\r\\n][^]*)?$`);
const TAG = new RegExp(
  `<(/?)(${NAME})((?:[ \\t\\r\\n]+${NAME}[ \\t\\r\\n]*=[ \\t\\r\\n]*(?:"[^"<]*"|'[^'<]*'))*)[ \\t\\r\\n]*(/?)>`,
  "y",
);
const ATTRIBUTE = new RegExp(`(${NAME})[ \\t\\r\\n]*=[ \\t\\r\\n]*(?:"([^"<]*)"|'([^'<]*)')`, "g");
// Maps, not objects: a reference named &constructor; must find nothing.
const SAXUTILS = new Map([
  ["lt", "<"],
  ["gt", ">"],
  ["amp", "&"],
]);
const NAMED = new Map([...SAXUTILS, ["quot", '"'], ["apos", "'"]]);
const WHITESPACE = /^[ \t\r\n]*$/;

function malformed(message: string, at: number): never {
  throw new MarshalError(`malformed XML at character ${at}: ${message}`);
}

function isXmlCharacter(code: number): boolean {
  return (
    code === 0x9 ||
    code === 0xa ||
    code === 0xd ||
    (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) ||
    (code >= 0x10000 && code <= 0x10ffff)
  );
}

/** The character a reference (`lt`, `#233`, `#xE9`...) stands for. */
function referenced(name: string, at: number): string {
  const named = NAMED.get(name);
  if (named !== undefined) return named;
  const code = /^#[0-9]{1,7}$/.test(name)
    ? Number.parseInt(name.slice(1), 10)
    : /^#x[0-9A-Fa-f]{1,6}$/.test(name)
      ? Number.parseInt(name.slice(2), 16)
      : -1;
  if (code < 0) malformed(`'&${name.slice(0, 12)}' is not a reference such as &amp; or &#233;`, at);
  if (!isXmlCharacter(code)) malformed(`&${name}; is not a character XML can hold`, at);
  return String.fromCodePoint(code);
}

/** Character data with line ends normalised (as XML requires) and references resolved. */
function characterData(raw: string, at: number): string {
  const text = raw.includes("\r") ? raw.replace(/\r\n?/g, "\n") : raw;
  return resolveReferences(text, (name, offset) => referenced(name, at + offset));
}

/**
 * `text` with each `&name;` that `resolve` knows replaced, in one pass into a buffer: a global
 * regular-expression replace costs ~125 ns a match, 100 ms for the references of a 4 MB body.
 * References only shrink text, so the buffer never outgrows `text`.
 */
function resolveReferences(
  text: string,
  resolve: (name: string, offset: number) => string | undefined,
): string {
  let ampersand = text.indexOf("&");
  if (ampersand < 0) return text;
  const units = new Uint16Array(text.length);
  let length = 0;
  let last = 0;
  // Kept across ampersands, so that '&&&...' far from any ';' is scanned once, not once each.
  let semicolon = -1;
  while (ampersand >= 0) {
    for (let index = last; index < ampersand; index++) units[length++] = text.charCodeAt(index);
    if (semicolon < ampersand) {
      semicolon = text.indexOf(";", ampersand);
      if (semicolon < 0) semicolon = text.length;
    }
    // The longest reference, &#x10FFFF;, has 8 characters between '&' and ';'.
    const name =
      semicolon < text.length && semicolon - ampersand <= 9 ? text.slice(ampersand + 1, semicolon) : "";
    const replacement = resolve(name, ampersand);
    if (replacement === undefined) {
      units[length++] = 0x26;
      last = ampersand + 1;
    } else {
      for (let index = 0; index < replacement.length; index++)
        units[length++] = replacement.charCodeAt(index);
      last = semicolon + 1;
    }
    ampersand = text.indexOf("&", last);
  }
  for (let index = last; index < text.length; index++) units[length++] = text.charCodeAt(index);
  let decoded = "";
  for (let start = 0; start < length; start += 8192) {
    const chunk = units.subarray(start, Math.min(start + 8192, length));
    decoded += String.fromCharCode.apply(null, chunk as unknown as number[]);
  }
  return decoded;
}

const NO_ATTRIBUTES: Attributes = Object.freeze(Object.create(null));

function attributesOf(text: string, at: number): Attributes {
  if (text === "") return NO_ATTRIBUTES;
  // No prototype: an attribute named __proto__ stays an attribute.
  const attributes: Attributes = Object.create(null);
  ATTRIBUTE.lastIndex = 0;
  for (let match = ATTRIBUTE.exec(text); match; match = ATTRIBUTE.exec(text)) {
    const [, name = "", double, single] = match;
    if (name in attributes) malformed(`attribute ${name} given twice`, at);
    attributes[name] = characterData((double ?? single ?? "").replace(/[\t\n\r]/g, " "), at);
  }
  return attributes;
}

/** Skips a comment or processing instruction, or passes CDATA on; returns where reading resumes. */
function special(xml: string, lt: number, depth: number, handlers: XmlHandlers): number {
  if (xml.startsWith("<!--", lt)) {
    const close = xml.indexOf("-->", lt + 4);
    if (close < 0) malformed("a comment is not closed", lt);
    return close + 3;
  }
  if (xml.startsWith("<![CDATA[", lt)) {
    const close = xml.indexOf("]]>", lt + 9);
    if (close < 0) malformed("a CDATA section is not closed", lt);
    if (depth === 0) malformed("CDATA outside the root element", lt);
    handlers.text(xml.slice(lt + 9, close).replace(/\r\n?/g, "\n"));
    return close + 3;
  }
  if (xml.startsWith("<?", lt)) {
    const close = xml.indexOf("?>", lt + 2);
    if (close < 0 || /^xml[ \t\r\n?]/i.test(xml.slice(lt + 2, lt + 6)))
      malformed("a misplaced XML declaration or unclosed processing instruction", lt);
    // A target name, then nothing or white space and any text.
    if (!PROCESSING_INSTRUCTION.test(xml.slice(lt + 2, close)))
      malformed("a processing instruction without a valid target name", lt);
    return close + 2;
  }
  return malformed("declarations such as <!DOCTYPE> are not accepted", lt);
}

/** Reads one XML document, calling `handlers` for each element and run of character data. */
function readXml(xml: string, handlers: XmlHandlers): void {
  const bad = NOT_XML_CHARACTER.exec(xml);
  if (bad) {
    const code = bad[0].codePointAt(0) ?? 0;
    malformed(
      `U+${code.toString(16).toUpperCase().padStart(4, "0")} is not a character XML can hold`,
      bad.index,
    );
  }
  let index = xml.startsWith("\uFEFF") ? 1 : 0;
  if (/^<\?xml[ \t\r\n?]/.test(xml.slice(index, index + 6))) {
    const end = xml.indexOf("?>", index);
    if (end < 0) malformed("the XML declaration is not closed", index);
    index = end + 2;
  }
  const open: string[] = [];
  let rootSeen = false;
  while (index < xml.length) {
    const lt = xml.indexOf("<", index);
    const end = lt < 0 ? xml.length : lt;
    if (end > index) {
      const raw = xml.slice(index, end);
      if (open.length === 0) {
        if (!WHITESPACE.test(raw)) malformed("text outside the root element", index);
      } else {
        if (raw.includes("]]>")) malformed("']]>' in text", index);
        handlers.text(characterData(raw, index));
      }
    }
    if (lt < 0) break;
    // One character tells a tag from the rest (comments, CDATA, declarations, instructions).
    const next = xml.charCodeAt(lt + 1);
    if (next === 0x21 || next === 0x3f) {
      index = special(xml, lt, open.length, handlers);
      continue;
    }
    TAG.lastIndex = lt;
    const tag = TAG.exec(xml);
    if (!tag) malformed("an unreadable tag", lt);
    const closing = tag?.[1];
    const name = tag?.[2] ?? "";
    const attributeText = tag?.[3] ?? "";
    const selfClosing = tag?.[4];
    index = TAG.lastIndex;
    if (closing) {
      if (attributeText || selfClosing) malformed(`a closing tag </${name}> with attributes`, lt);
      const expected = open.pop();
      if (expected !== name) malformed(`</${name}> where </${expected ?? "nothing"}> was expected`, lt);
      handlers.close(name);
      continue;
    }
    if (open.length === 0) {
      if (rootSeen) malformed(`a second root element <${name}>`, lt);
      rootSeen = true;
    }
    handlers.open(name, attributesOf(attributeText, lt));
    if (selfClosing) handlers.close(name);
    else open.push(name);
  }
  if (open.length > 0) malformed(`<${open[open.length - 1]}> is not closed`, xml.length);
  if (!rootSeen) malformed("no root element", xml.length);
}

/** The logical size of a closed frame's value. */
function sizeOf(frame: Frame, value: Marshallable, sizes: Map<string, Size>): Size {
  if (typeof value === "string") return { values: 1, characters: value.length };
  if (frame.tag !== "reference") {
    return SCALAR_TAGS.has(frame.tag) ? { values: 1, characters: frame.text.length } : frame.size;
  }
  // closeFrame resolved the reference: its target exists, so no size means it is still open.
  const size = frame.id === undefined ? undefined : sizes.get(frame.id);
  if (!size) {
    return fail(
      `<reference id="${frame.id}"> points at a container that holds it (a cycle): SlapOS never sends one`,
    );
  }
  return size;
}

function closeFrame(frame: Frame, byId: Map<string, Marshallable>): Marshallable {
  const noChildren = () => {
    if (frame.children.length > 0) fail(`<${frame.tag}> cannot hold elements`);
  };
  switch (frame.tag) {
    case "marshal":
      return null;
    case "none":
      noChildren();
      return null;
    case "bool":
      noChildren();
      if (frame.text.trim() !== "0" && frame.text.trim() !== "1")
        fail(`<bool> must be 0 or 1, not '${frame.text.slice(0, 40)}'`);
      return frame.text.trim() === "1";
    case "int":
    case "long": {
      noChildren();
      const text = frame.text.trim().replace(/L$/, "");
      // BigInt parsing and printing are quadratic in the digits.
      if (text.length > UNMARSHAL_LIMITS.integerDigits + 1)
        fail(`<${frame.tag}> has more than ${UNMARSHAL_LIMITS.integerDigits} digits`);
      if (!/^[-+]?\d+$/.test(text)) fail(`<${frame.tag}> is not an integer: '${frame.text.slice(0, 40)}'`);
      const big = BigInt(text);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(big)
        : big;
    }
    case "float": {
      noChildren();
      const text = frame.text.trim();
      const special: Record<string, number> = { inf: Infinity, "-inf": -Infinity, nan: Number.NaN };
      const number = text in special ? special[text] : Number(text);
      if (number === undefined || (Number.isNaN(number) && text !== "nan") || text === "") {
        fail(`<float> is not a number: '${frame.text.slice(0, 40)}'`);
      }
      return new PyFloat(number as number);
    }
    case "string":
    case "unicode":
      noChildren();
      return unescapeString(frame.text);
    case "tuple":
      return new PyTuple(frame.children);
    case "list": {
      // Not push(...children): a spread of 100,000 arguments overflows the stack.
      const list = frame.value as Marshallable[];
      for (const child of frame.children) list.push(child);
      return list;
    }
    case "dictionary": {
      if (frame.children.length % 2 !== 0) fail("<dictionary> must alternate keys and values");
      const dictionary = frame.value as { [key: string]: Marshallable };
      for (let index = 0; index < frame.children.length; index += 2) {
        const key = frame.children[index];
        if (typeof key !== "string") fail("dictionary keys must be strings");
        Object.defineProperty(dictionary, key as string, {
          value: frame.children[index + 1] ?? null,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return dictionary;
    }
    case "object": {
      const [args, state] = frame.children;
      if (
        frame.children.length !== 2 ||
        !(args instanceof PyTuple) ||
        typeof state !== "object" ||
        state === null
      ) {
        fail("<object> must hold a <tuple> of arguments and a <dictionary> of state");
      }
      const object = frame.value as PyObject;
      for (const item of (args as PyTuple).items) (object.args as Marshallable[]).push(item);
      for (const [key, entry] of Object.entries(state as { [key: string]: Marshallable })) {
        Object.defineProperty(object.state, key, {
          value: entry,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return object;
    }
    case "reference": {
      noChildren();
      const target = frame.id === undefined ? undefined : byId.get(frame.id);
      if (target === undefined) fail(`<reference id="${frame.id}"> points at nothing marshalled before it`);
      return target as Marshallable;
    }
    default:
      return fail(`unknown element <${frame.tag}>`);
  }
}
