import { describe, expect, it } from "vitest";
import { checkHost, type HostFacts, PreflightError } from "../../slave-bootstrap/preflight.js";

const healthy: HostFacts = {
  os: "Linux",
  architecture: "x86_64",
  python: "3.11",
  node: "v20.20.2",
  freeMegabytes: 20_000,
  tap: true,
  ipv6: true,
  systemd: false,
  installed: null,
};
const expected = { masterUrl: "https://master:8443/", python: "3.11", needsTap: true };

describe("preflight", () => {
  it("accepts a fit host, and one that is already this master's node", () => {
    expect(() => checkHost("h", healthy, expected)).not.toThrow();
    expect(() =>
      checkHost(
        "h",
        { ...healthy, installed: { masterUrl: expected.masterUrl, computerId: "COMP-1" } },
        expected,
      ),
    ).not.toThrow();
  });

  it("refuses a node of another master, or another computer, naming what to do", () => {
    const other = { ...healthy, installed: { masterUrl: "https://elsewhere:8443/", computerId: "COMP-9" } };
    expect(() => checkHost("h", other, expected)).toThrow(
      "already a node of another master (https://elsewhere:8443/); uninstall it first",
    );
    const mine = { ...healthy, installed: { masterUrl: expected.masterUrl, computerId: "COMP-9" } };
    expect(() => checkHost("h", mine, { ...expected, computerId: "COMP-1" })).toThrow(
      "it is already computer COMP-9, not COMP-1",
    );
  });

  it("lists every problem at once", () => {
    const unfit = { ...healthy, os: "FreeBSD", python: null, freeMegabytes: 100, tap: false, ipv6: false };
    let error: unknown;
    try {
      checkHost("root@h", unfit, expected);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(PreflightError);
    const lines = (error as Error).message.split("\n").slice(1);
    expect(lines).toEqual([
      "- it runs FreeBSD; nodes run Linux",
      "- python3 with its venv module is missing: install python3 and python3-venv",
      "- only 100 MB are free on /; a node needs 1024 MB",
      "- /dev/net/tun is missing: load the tun module, or format without taps",
      "- IPv6 is disabled: partitions need a global IPv6 address each",
    ]);
  });
});
