import { describe, expect, it } from "vitest";
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
      format: {
        partitionAmount: 3,
        createTap: false,
        alterUser: false,
        alterNetwork: true,
        userBaseName: "slapuser",
      },
    });
  });

  it.each([
    ["[slapos]\nmaster_url = http://x/\n", "[slapos] computer_id is required"],
    ["[slapos]\ncomputer_id = C\nmaster_url = not a url\n", "master_url = not a url is not a URL"],
    [`${minimal}cert_file = /a\n`, "cert_file and key_file go together"],
    [`${minimal}[slapformat]\npartition_amount = -1\n`, "partition_amount = -1 is not a number >= 0"],
    [`${minimal}certificate_renewal_days = soon\n`, "certificate_renewal_days = soon is not a number >= 0"],
    [`${minimal}[slapformat]\ncreate_tap = maybe\n`, "create_tap = maybe is not true or false"],
  ])("refuses %j naming the key", (source, message) => {
    expect(() => parseNodeConfig(source, "slapos.cfg")).toThrow(ConfigError);
    expect(() => parseNodeConfig(source, "slapos.cfg")).toThrow(message);
  });
});
