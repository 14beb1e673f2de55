import { SaxesParser } from "saxes";
import { assertXmlCompatible, compareCodePoints, MarshalError } from "./xml-marshaller.js";

// The "instance XML" SlapOS stores parameters in (slapos.util's dict2xml / xml2dict):
// `<instance><parameter id="KEY">VALUE</parameter>...</instance>`, keys sorted, pretty-printed.

function escapeText(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

function escapeAttribute(text: string): string {
  return escapeText(text).replace(/"/g, "&quot;").replace(/\n/g, "&#10;").replace(/\t/g, "&#9;");
}

/** Encodes parameters as Python's `slapos.util.dict2xml` does (a null value becomes "None"). */
export function dictToInstanceXml(parameters: Record<string, string | null>): string {
  const keys = Object.keys(parameters).sort(compareCodePoints);
  const header = "<?xml version='1.0' encoding='utf-8'?>\n";
  if (keys.length === 0) return `${header}<instance/>\n`;
  const lines = keys.map((key) => {
    const value = parameters[key] ?? "None";
    assertXmlCompatible(key, `parameter name '${key}'`);
    assertXmlCompatible(value, `the value of parameter '${key}'`);
    return value === ""
      ? `  <parameter id="${escapeAttribute(key)}"></parameter>`
      : `  <parameter id="${escapeAttribute(key)}">${escapeText(value)}</parameter>`;
  });
  return `${header}<instance>\n${lines.join("\n")}\n</instance>\n`;
}

/**
 * Decodes instance XML as Python's `slapos.util.xml2dict` does: a repeated id joins its values
 * with a space, an empty element gives null. Empty input gives an empty dict.
 */
export function instanceXmlToDict(xml: string): Record<string, string | null> {
  const result: Record<string, string | null> = {};
  if (!xml) return result;
  const parser = new SaxesParser({ xmlns: false });
  let depth = 0;
  let key: string | undefined;
  let text = "";
  let failure: MarshalError | undefined;
  parser.on("error", (error) => {
    failure ??= new MarshalError(`malformed instance XML: ${error.message}`);
  });
  parser.on("opentag", (node) => {
    depth += 1;
    if (depth === 2 && node.name === "parameter") {
      key = String((node.attributes as Record<string, string>).id ?? "None");
      text = "";
    }
  });
  const onText = (chunk: string) => {
    if (key !== undefined && depth === 2) text += chunk;
  };
  parser.on("text", onText);
  parser.on("cdata", onText);
  parser.on("closetag", () => {
    if (depth === 2 && key !== undefined) {
      const value = text === "" ? null : text;
      const previous = Object.hasOwn(result, key) ? result[key] : null;
      Object.defineProperty(result, key, {
        value: previous !== null && previous !== undefined ? `${previous} ${value ?? ""}` : value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
      key = undefined;
    }
    depth -= 1;
  });
  try {
    parser.write(xml).close();
  } catch (error) {
    failure ??= new MarshalError(`malformed instance XML: ${(error as Error).message}`);
  }
  if (failure) throw failure;
  return result;
}
