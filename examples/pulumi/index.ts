import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { type WebCloudHost, webCloud } from "./web-cloud.js";

// The program of this repository's Pulumi project (Pulumi.yaml at its root): `pulumi up` there
// builds the web cloud of web-cloud.ts from the stack's configuration, which `npm run demo` sets
// with `pulumi config set` (the provider's `slapos:*` keys, and the project's own):
//   hosts     JSON: [{ "name", "address", "hostKey", "privateKeyFile" }]
//   release   the software release's URL
//   greeting  optional, default "Hello"

interface ConfiguredHost extends Omit<WebCloudHost, "privateKey"> {
  /** A file holding the private key root on the host accepts; read here, kept secret. */
  privateKeyFile?: string;
}

const config = new pulumi.Config();
const hosts = config.requireObject<ConfiguredHost[]>("hosts").map(({ privateKeyFile, ...host }) => ({
  ...host,
  privateKey: privateKeyFile ? pulumi.secret(readFileSync(privateKeyFile, "utf8")) : undefined,
}));
const cloud = webCloud({ hosts, release: config.require("release"), greeting: config.get("greeting") });

export const urls = cloud.urls;
