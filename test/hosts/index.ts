export { SUDO_USER, TestHost } from "./host.js";
export { TestNetwork } from "./network.js";
export { type CommandResult, type SshTarget, sha256Fingerprint, sshExec } from "./ssh.js";

import { requires } from "../support/requirements.js";

/** What a test that creates test hosts needs on this machine. */
export const testHostRequirements = [
  requires.root("creates network namespaces, a bridge, mounts and users"),
  requires.command("ip", "network namespaces and veth pairs (iproute2)"),
  requires.command("unshare", "mount namespaces (util-linux)"),
  requires.command("sshd", "each test host runs a real OpenSSH server (openssh-server)"),
];
