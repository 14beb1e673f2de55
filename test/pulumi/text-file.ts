import * as pulumi from "@pulumi/pulumi";

/**
 * The smallest dynamic resource that touches something real: a text file on this machine. It
 * exercises the harness and shows the shape every provider of ours takes (Inputs, Outputs,
 * a Provider with create/read/update/delete/diff, a thin Resource class).
 *
 * The provider methods run in the engine's plugin process from their serialized text, so they
 * reach modules through `require` at call time and capture nothing but plain data.
 */
export interface TextFileInputs {
  path: string;
  content: string;
}

export interface TextFileOutputs extends TextFileInputs {
  size: number;
}

const textFileProvider: pulumi.dynamic.ResourceProvider<TextFileInputs, TextFileOutputs> = {
  async create(inputs) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.writeFileSync(inputs.path, inputs.content, { flag: "wx" });
    return { id: inputs.path, outs: { ...inputs, size: Buffer.byteLength(inputs.content) } };
  },
  async read(id, props) {
    const fs = require("node:fs") as typeof import("node:fs");
    if (!fs.existsSync(id)) return {}; // gone behind our back: no id drops it from state
    const content = fs.readFileSync(id, "utf8");
    const outs = { path: id, content, size: Buffer.byteLength(content) };
    return { id, props: { ...props, ...outs }, inputs: outs };
  },
  async diff(_id, olds, news) {
    const replaces = olds.path === news.path ? [] : ["path"];
    return {
      changes: olds.content !== news.content || replaces.length > 0,
      replaces,
      deleteBeforeReplace: true,
    };
  },
  async update(_id, _olds, news) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.writeFileSync(news.path, news.content);
    return { outs: { ...news, size: Buffer.byteLength(news.content) } };
  },
  async delete(id) {
    const fs = require("node:fs") as typeof import("node:fs");
    fs.rmSync(id, { force: true });
  },
};

export class TextFile extends pulumi.dynamic.Resource {
  declare readonly path: pulumi.Output<string>;
  declare readonly content: pulumi.Output<string>;
  declare readonly size: pulumi.Output<number>;

  constructor(
    name: string,
    args: { path: pulumi.Input<string>; content: pulumi.Input<string> },
    opts?: pulumi.CustomResourceOptions,
  ) {
    super(textFileProvider, name, { ...args, size: undefined }, opts, "test", "TextFile");
  }
}
