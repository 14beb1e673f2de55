import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { SelfHostedMaster } from "pulumi-slapos";
import { type WebCloudHost, webCloud } from "./web-cloud.js";

// The program of this repository's Pulumi project (Pulumi.yaml at its root): `pulumi up` there
// brings up a self-hosted SlapOS cloud on the hosts of the stack's configuration, which
// `npm run demo` sets with `pulumi config set` (its own test hosts, unless told otherwise):
//   hosts     JSON: [{ "name", "address", "user", "hostKey", "privateKeyFile" }], two or more;
//             the master runs as an instance on the first, a web instance on each other
//   release   the web instances' software release URL
//   greeting  optional, default "Hello"

interface ConfiguredHost extends Omit<WebCloudHost, "privateKey"> {
  /** A file holding the private key the host accepts for `user`; read here, kept secret. */
  privateKeyFile?: string;
}

const config = new pulumi.Config();
const [first, ...others] = config
  .requireObject<ConfiguredHost[]>("hosts")
  .map(({ privateKeyFile, ...host }) => ({
    ...host,
    privateKey: privateKeyFile ? pulumi.secret(readFileSync(privateKeyFile, "utf8")) : undefined,
  }));
if (!first || others.length === 0) {
  throw new Error("the stack config 'hosts' needs two hosts or more: the master runs on the first");
}

const selfHosted = new SelfHostedMaster("master", {
  ssh: { host: first.address, user: first.user, hostKey: first.hostKey, privateKey: first.privateKey },
});
const cloud = webCloud({
  hosts: others,
  release: config.require("release"),
  greeting: config.get("greeting"),
  master: selfHosted.master,
});

export const masterUrl = selfHosted.url;
export const urls = cloud.urls;
