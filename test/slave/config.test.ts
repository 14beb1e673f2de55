import pino from "pino";
import { describe, expect, it } from "vitest";
import { openAgent } from "../../slave/agent.js";
import { ConfigError, parseNodeConfig } from "../../slave/config.js";

const minimal = "[slapos]\ncomputer_id = COMP-1\nmaster_url = https://10.0.0.1:8443/\n";

describe("the node configuration", () => {
  it("reads SlapOS's key names and fills SlapOS's defaults", () => {
    const config = parseNodeConfig(
      `${minimal}cert_file = /etc/c.crt\nkey_file = /etc/c.key\n[slapformat]\npartition_amount = 3\ncreate_tap = false\nalter_user = no\n`,
      "slapos.cfg",
    );
    expect(config).toMatchObject({
      computerId: "COMP-1",
      masterUrl: "https://10.0.0.1:8443/",
      certFile: "/etc/c.crt",
      softwareRoot: "/opt/slapgrid",
      instanceRoot: "/srv/slapgrid",
      promiseTimeoutSeconds: 20,
      certificateRenewalDays: 30,
      cgroupName: "slapos",
      partitionLimits: { maxProcesses: 1024, maxMemoryBytes: null, cpuWeight: 100 },
      format: {
        partitionAmount: 3,
        createTap: false,
        alterUser: false,
        alterNetwork: true,
        userBaseName: "slapuser",
      },
    });
  });

  it.skipIf(process.getuid?.() !== 0)(
    "refuses, as root, to run releases' code without partition users unless allow_root_instances says so",
    async () => {
      const config = parseNodeConfig(`${minimal}[slapformat]\nalter_user = false\n`, "slapos.cfg");
      expect(config.format.allowRootInstances).toBe(false);
      await expect(openAgent(config, pino({ level: "silent" }))).rejects.toThrow(
        /alter_user = false makes the agent run every release's code .* as root: .* allow_root_instances = true/,
      );
      const allowed = parseNodeConfig(
        `${minimal}[slapformat]\nalter_user = false\nallow_root_instances = true\n`,
        "slapos.cfg",
      );
      expect(allowed.format.allowRootInstances).toBe(true);
    },
  );

  it("reads the partition limits, 0 meaning no limit", () => {
    const config = parseNodeConfig(
      `${minimal}cgroup_name = slapos-2\npartition_max_processes = 0\npartition_max_memory = 512m\npartition_cpu_weight = 250\n`,
      "slapos.cfg",
    );
    expect(config.cgroupName).toBe("slapos-2");
    expect(config.partitionLimits).toEqual({
      maxProcesses: null,
      maxMemoryBytes: 512 * 1024 * 1024,
      cpuWeight: 250,
    });
    expect(parseNodeConfig(`${minimal}partition_max_memory = 4096\n`, "slapos.cfg").partitionLimits).toEqual({
      maxProcesses: 1024,
      maxMemoryBytes: 4096,
      cpuWeight: 100,
    });
  });

  it.each([
    ["[slapos]\nmaster_url = http://x/\n", "[slapos] computer_id is required"],
    ["[slapos]\ncomputer_id = C\nmaster_url = not a url\n", "master_url = not a url is not a URL"],
    [`${minimal}cert_file = /a\n`, "cert_file and key_file go together"],
    [`${minimal}[slapformat]\npartition_amount = -1\n`, "partition_amount = -1 is not a number >= 0"],
    [`${minimal}certificate_renewal_days = soon\n`, "certificate_renewal_days = soon is not a number >= 0"],
    [`${minimal}[slapformat]\ncreate_tap = maybe\n`, "create_tap = maybe is not true or false"],
    [`${minimal}cgroup_name = ../x\n`, "cgroup_name = ../x is not a directory name"],
    [`${minimal}partition_max_processes = -5\n`, "partition_max_processes = -5 is not a whole number"],
    [`${minimal}partition_max_memory = 1.5G\n`, "partition_max_memory = 1.5G is not a size"],
    [
      `${minimal}partition_cpu_weight = 0\n`,
      "partition_cpu_weight = 0 is not a whole number from 1 to 10000",
    ],
  ])("refuses %j naming the key", (source, message) => {
    expect(() => parseNodeConfig(source, "slapos.cfg")).toThrow(ConfigError);
    expect(() => parseNodeConfig(source, "slapos.cfg")).toThrow(message);
  });
});
