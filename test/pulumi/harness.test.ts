import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWith } from "../support/requirements.js";
import { pulumiRequirements, TestStack } from "./harness.js";
import { TextFile } from "./text-file.js";

describeWith(pulumiRequirements, "real pulumi up/preview/refresh/destroy on a file backend", () => {
  let stack: TestStack;
  let path: string;
  let content = "first version\n";
  const secret = `token-${randomBytes(12).toString("hex")}`;

  beforeAll(async () => {
    stack = await TestStack.create({
      projectName: "harness",
      program: async () => {
        const file = new TextFile("greeting", { path, content });
        new TextFile("token", { path: `${path}.token`, content: pulumi.secret(secret) });
        return { path: file.path, size: file.size };
      },
    });
    path = join(stack.directory, "greeting.txt");
  });

  afterAll(async () => {
    await stack?.dispose();
  });

  it("creates the resource", async () => {
    const result = await stack.up();
    expect(result.summary.result).toBe("succeeded");
    expect(result.summary.resourceChanges).toEqual({ create: 3 }); // the stack and two files
    expect(await readFile(path, "utf8")).toBe("first version\n");
    expect(result.outputs.size?.value).toBe(14);
  });

  it("shows no changes in a preview when nothing changed", async () => {
    const result = await stack.preview();
    expect(result.changeSummary).toEqual({ same: 3 });
  });

  it("updates in place when an input changes", async () => {
    content = "second, longer version\n";
    const preview = await stack.preview();
    expect(preview.changeSummary).toEqual({ same: 2, update: 1 });
    const result = await stack.up();
    expect(result.summary.resourceChanges).toEqual({ same: 2, update: 1 });
    expect(await readFile(path, "utf8")).toBe(content);
    expect(result.outputs.size?.value).toBe(23);
  });

  it("finds drift on refresh, and the next up repairs it", async () => {
    await writeFile(path, "edited behind Pulumi's back\n");
    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges).toEqual({ same: 2, update: 1 });
    const preview = await stack.preview();
    expect(preview.changeSummary).toEqual({ same: 2, update: 1 });
    await stack.up();
    expect(await readFile(path, "utf8")).toBe(content);
  });

  it("keeps a secret input encrypted in the state file", async () => {
    expect(await readFile(`${path}.token`, "utf8")).toBe(secret);
    const state = await stack.stateFileText();
    expect(state).toContain("pulumi-nodejs:dynamic/test:TextFile");
    expect(state).toContain("ciphertext");
    expect(state).not.toContain(secret);
    expect(state).not.toContain(stack.secretsPassphrase);
  });

  it("destroys the resource", async () => {
    const result = await stack.destroy();
    expect(result.summary.resourceChanges).toEqual({ delete: 3 });
    expect(existsSync(path)).toBe(false);
    expect(existsSync(`${path}.token`)).toBe(false);
  });
});
