import { request } from "node:http";
import { SaxesParser } from "saxes";

// A minimal XML-RPC client for supervisord's unix socket: no maintained Node XML-RPC client speaks
// over a unix socket, and supervisord needs only the core types.

/** What a call may send: XML-RPC has no undefined, and supervisord takes no null or float. */
export type XmlRpcParam = string | number | boolean | XmlRpcParam[] | { [key: string]: XmlRpcParam };

/** What an answer may hold (`<nil/>` and `<double>` included, as Python's xmlrpc writes them). */
export type XmlRpcValue = string | number | boolean | null | XmlRpcValue[] | { [key: string]: XmlRpcValue };

/** A `<fault>` answer: the server understood the call and refused it. */
export class XmlRpcFault extends Error {
  constructor(
    readonly code: number,
    readonly faultString: string,
  ) {
    super(`XML-RPC fault ${code}: ${faultString}`);
    this.name = "XmlRpcFault";
  }
}

/** The answer could not be obtained or read (no server, timeout, bad HTTP status, bad XML). */
export class XmlRpcError extends Error {
  constructor(
    message: string,
    /** The system error code (ENOENT, ECONNREFUSED...) when the socket could not be reached. */
    readonly errno?: string,
  ) {
    super(message);
    this.name = "XmlRpcError";
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

function escapeText(text: string): string {
  // \r is escaped so that the server's parser does not turn it into \n.
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\r/g, "&#13;");
}

const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

function encodeValue(value: XmlRpcParam): string {
  if (typeof value === "string") return `<value><string>${escapeText(value)}</string></value>`;
  if (typeof value === "boolean") return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < INT_MIN || value > INT_MAX) {
      throw new XmlRpcError(`${value} is not a 32-bit integer, the only number XML-RPC <int> carries`);
    }
    return `<value><int>${value}</int></value>`;
  }
  if (Array.isArray(value))
    return `<value><array><data>${value.map(encodeValue).join("")}</data></array></value>`;
  const members = Object.entries(value).map(
    ([name, member]) => `<member><name>${escapeText(name)}</name>${encodeValue(member)}</member>`,
  );
  return `<value><struct>${members.join("")}</struct></value>`;
}

export function encodeMethodCall(method: string, params: XmlRpcParam[]): string {
  const encoded = params.map((param) => `<param>${encodeValue(param)}</param>`).join("");
  return `<?xml version="1.0"?>\n<methodCall><methodName>${escapeText(method)}</methodName><params>${encoded}</params></methodCall>`;
}

// ---------------------------------------------------------------------------------------------
// Decoding: the answer is read into a small element tree, then interpreted.

interface Element {
  name: string;
  children: Element[];
  /** The element's own text, not its descendants'. */
  text: string;
}

function parseXml(xml: string): Element {
  const parser = new SaxesParser({ xmlns: false });
  const root: Element = { name: "", children: [], text: "" };
  const stack: Element[] = [root];
  let failure: Error | undefined;
  parser.on("error", (error) => {
    failure ??= error;
  });
  parser.on("opentag", (node) => {
    const element: Element = { name: node.name, children: [], text: "" };
    stack[stack.length - 1]?.children.push(element);
    stack.push(element);
  });
  parser.on("closetag", () => {
    stack.pop();
  });
  const onText = (text: string) => {
    const top = stack[stack.length - 1];
    if (top) top.text += text;
  };
  parser.on("text", onText);
  parser.on("cdata", onText);
  try {
    parser.write(xml).close();
  } catch (error) {
    failure ??= error as Error;
  }
  if (failure) throw new XmlRpcError(`malformed XML-RPC answer: ${failure.message}`);
  const [document] = root.children;
  if (!document || root.children.length !== 1)
    throw new XmlRpcError("XML-RPC answer has no single root element");
  return document;
}

function only(element: Element, name: string): Element {
  const [child] = element.children;
  if (!child || element.children.length !== 1 || child.name !== name) {
    const found = element.children.map((each) => `<${each.name}>`).join(", ") || "nothing";
    throw new XmlRpcError(`XML-RPC <${element.name}> must hold one <${name}>, not ${found}`);
  }
  return child;
}

function integer(element: Element): number {
  const text = element.text.trim();
  const value = Number(text);
  if (!/^[+-]?\d+$/.test(text) || !Number.isSafeInteger(value)) {
    throw new XmlRpcError(`XML-RPC <${element.name}> '${text}' is not an integer`);
  }
  return value;
}

function decodeValue(value: Element): XmlRpcValue {
  const [typed] = value.children;
  // A <value> without a type element is a string, whitespace included.
  if (!typed) return value.text;
  if (value.children.length !== 1) throw new XmlRpcError("XML-RPC <value> must hold one typed element");
  switch (typed.name) {
    case "string":
      return typed.text;
    case "int":
    case "i4":
    case "i8":
      return integer(typed);
    case "boolean": {
      const text = typed.text.trim();
      if (text !== "0" && text !== "1") throw new XmlRpcError(`XML-RPC <boolean> '${text}' is not 0 or 1`);
      return text === "1";
    }
    case "double": {
      const number = Number(typed.text.trim());
      if (typed.text.trim() === "" || Number.isNaN(number)) {
        throw new XmlRpcError(`XML-RPC <double> '${typed.text}' is not a number`);
      }
      return number;
    }
    case "nil":
      return null;
    case "array":
      return only(typed, "data").children.map((item) => {
        if (item.name !== "value") throw new XmlRpcError(`XML-RPC <data> holds <${item.name}>, not <value>`);
        return decodeValue(item);
      });
    case "struct":
      // fromEntries defines own properties, so a member named __proto__ stays a plain key.
      return Object.fromEntries(
        typed.children.map((member) => {
          const name = member.children.find((child) => child.name === "name");
          const memberValue = member.children.find((child) => child.name === "value");
          if (member.name !== "member" || !name || !memberValue) {
            throw new XmlRpcError("XML-RPC <struct> must hold <member> elements with a <name> and a <value>");
          }
          return [name.text, decodeValue(memberValue)];
        }),
      );
    default:
      throw new XmlRpcError(`XML-RPC type <${typed.name}> is not supported`);
  }
}

/** The value of a `<methodResponse>`; a `<fault>` is thrown as an XmlRpcFault. */
export function decodeMethodResponse(xml: string): XmlRpcValue {
  const response = parseXml(xml);
  if (response.name !== "methodResponse") {
    throw new XmlRpcError(`XML-RPC answer is <${response.name}>, not <methodResponse>`);
  }
  const [body] = response.children;
  if (body?.name === "fault") {
    const fault = decodeValue(only(body, "value"));
    const code = (fault as { faultCode?: unknown } | null)?.faultCode;
    const text = (fault as { faultString?: unknown } | null)?.faultString;
    if (typeof code !== "number" || typeof text !== "string") {
      throw new XmlRpcError("XML-RPC <fault> lacks an integer faultCode and a string faultString");
    }
    throw new XmlRpcFault(code, text);
  }
  if (body?.name !== "params") throw new XmlRpcError("XML-RPC <methodResponse> holds no <params>");
  return decodeValue(only(only(body, "param"), "value"));
}

// ---------------------------------------------------------------------------------------------
// Transport

/** POSTs an XML-RPC document to /RPC2 on a unix socket and returns the answer's text. */
export function postXmlRpc(socketPath: string, body: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const call = request(
      {
        socketPath,
        path: "/RPC2",
        method: "POST",
        headers: { "Content-Type": "text/xml", "Content-Length": Buffer.byteLength(body) },
        // One connection per call: nothing pooled outlives the caller.
        agent: false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (response.statusCode !== 200) {
            reject(
              new XmlRpcError(`${socketPath} answered HTTP ${response.statusCode}: ${text.slice(0, 200)}`),
            );
          } else {
            resolve(text);
          }
        });
      },
    );
    call.setTimeout(timeoutMs, () => {
      call.destroy(new XmlRpcError(`${socketPath} did not answer within ${timeoutMs} ms`, "ETIMEDOUT"));
    });
    call.on("error", (error: NodeJS.ErrnoException) => {
      reject(
        error instanceof XmlRpcError
          ? error
          : new XmlRpcError(`cannot reach ${socketPath}: ${error.message}`, error.code),
      );
    });
    call.end(body);
  });
}

/** Calls `method` on the XML-RPC server listening on `socketPath`. */
export async function callXmlRpc(
  socketPath: string,
  method: string,
  params: XmlRpcParam[],
  timeoutMs: number,
): Promise<XmlRpcValue> {
  return decodeMethodResponse(await postXmlRpc(socketPath, encodeMethodCall(method, params), timeoutMs));
}
