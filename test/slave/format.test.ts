import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planAddresses } from "../../slave/format/addresses.js";
import type { HostNetwork } from "../../slave/format/host-network.js";
import { formatIpv6, ipv6Netmask, parseIpv6 } from "../../slave/format/ipv6.js";
import { partitionResource, serializeResource } from "../../slave/format/resource.js";
import type { PartitionAddress } from "../../slave/partitions.js";
import { type TestHost, TestNetwork, testHostRequirements } from "../hosts/index.js";
import { describeWith, requires } from "../support/requirements.js";
import {
  type FormatRun,
  type FormatSettings,
  formatConfig,
  runFormat,
  writeHostFile,
} from "./format-host.js";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

describe("format's address arithmetic", () => {
  it("writes IPv6 addresses in canonical form and netmasks as SlapOS records them", () => {
    expect(formatIpv6(parseIpv6("FD77:0000:0001:0000:0000:0000:0000:000B"))).toBe("fd77:0:1::b");
    // The first of two equally long zero runs is the one shortened; a lone zero group never is.
    expect(formatIpv6(parseIpv6("2001:db8:0:0:1:0:0:1"))).toBe("2001:db8::1:0:0:1");
    expect(formatIpv6(parseIpv6("2001:db8:0:1:1:1:1:1"))).toBe("2001:db8:0:1:1:1:1:1");
    expect(formatIpv6(parseIpv6("::"))).toBe("::");
    expect(formatIpv6(parseIpv6("::ffff:192.0.2.1"))).toBe("::ffff:c000:201");
    expect(ipv6Netmask(64)).toBe("ffff:ffff:ffff:ffff::");
    expect(ipv6Netmask(128)).toBe("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    for (const bad of ["1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::8", "fd77::g"]) {
      expect(() => parseIpv6(bad), bad).toThrow(/is not an IPv6 address/);
    }
  });
});

/** A host with eth0 holding these addresses, as readHostNetwork would report it. */
function hostWith(addresses: [string, number][]): HostNetwork {
  return {
    links: new Map([["eth0", { name: "eth0", up: true, kind: null, tunType: null, owner: null }]]),
    addresses: addresses.map(([address, prefixLength]) => ({
      interfaceName: "eth0",
      family: address.includes(":") ? "inet6" : "inet",
      address,
      prefixLength,
      scope: address.startsWith("fe80") ? "link" : "global",
      tentative: false,
      dadFailed: false,
      temporary: false,
    })),
  };
}

function plan(host: HostNetwork, partitionAmount: number, recorded = new Map<number, PartitionAddress[]>()) {
  return planAddresses({
    partitionAmount,
    interfaceName: "eth0",
    ipv4LocalNetwork: "10.0.0.0/16",
    host,
    recorded,
    reference: (index) => `slappart${index}`,
  });
}

describe("format's address scheme", () => {
  const host = hostWith([
    ["fe80::1", 64],
    ["2001:db8:0:7::b", 64],
    ["2001:db8:0:7::b:4", 64],
    ["10.0.0.3", 24],
  ]);

  it("numbers partitions consecutively in the node's own block, skipping addresses the host uses", () => {
    const addresses = plan(host, 11);
    expect(addresses.map((a) => a.ipv4.address)).toEqual(
      ["1", "2", "4", "5", "6", "7", "8", "9", "10", "11", "12"].map((n) => `10.0.0.${n}`),
    );
    expect(addresses.map((a) => a.ipv6.address)).toEqual(
      ["2", "3", "5", "6", "7", "8", "9", "a", "b", "c", "d"].map((n) => `2001:db8:0:7::b:${n}`),
    );
    expect(new Set(addresses.map((a) => a.ipv4.netmask))).toEqual(new Set(["255.255.255.255"]));
    expect(new Set(addresses.map((a) => a.ipv6.netmask))).toEqual(new Set(["ffff:ffff:ffff:ffff::"]));
  });

  it("keeps the addresses a partition records, and gives them to no other partition", () => {
    const recorded = new Map([
      [
        1,
        [
          { address: "10.0.0.1", netmask: "255.255.255.255" },
          { address: "2001:db8:0:7::b:2", netmask: "ffff:ffff:ffff:ffff::" },
        ],
      ],
    ]);
    const addresses = plan(host, 3, recorded);
    expect(addresses.map((a) => [a.ipv4.address, a.ipv6.address])).toEqual([
      ["10.0.0.2", "2001:db8:0:7::b:3"],
      ["10.0.0.1", "2001:db8:0:7::b:2"],
      ["10.0.0.4", "2001:db8:0:7::b:5"],
    ]);
  });

  it("gives nodes that share a prefix disjoint blocks, and uses a long prefix whole", () => {
    const neighbour = plan(hostWith([["2001:db8:0:7::c", 64]]), 2);
    expect(neighbour.map((a) => a.ipv6.address)).toEqual(["2001:db8:0:7::c:2", "2001:db8:0:7::c:3"]);
    const slaac = plan(hostWith([["2001:db8:0:7:ec7a:aeff:fe32:84ac", 64]]), 1);
    expect(slaac[0]?.ipv6.address).toBe("2001:db8:0:7:aeff:fe32:84ac:2");
    const long = plan(hostWith([["2001:db8::1:b", 112]]), 2);
    expect(long.map((a) => a.ipv6)).toEqual([
      { address: "2001:db8::1:2", netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:0" },
      { address: "2001:db8::1:3", netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:0" },
    ]);
  });

  it("refuses networks too small for the partitions, saying how large they must be", () => {
    expect(() =>
      planAddresses({
        partitionAmount: 3,
        interfaceName: "eth0",
        ipv4LocalNetwork: "10.0.0.0/30",
        host,
        recorded: new Map(),
        reference: (index) => `slappart${index}`,
      }),
    ).toThrow(
      "ipv4_local_network = 10.0.0.0/30 has room for 2 partition addresses but partition_amount = 3: use a larger network (a /29 or larger)",
    );
    expect(() => plan(hostWith([["2001:db8::1", 126]]), 3)).toThrow(
      /IPv6 block 2001:db8::\/126 of eth0 has room for 2 partition addresses but partition_amount = 3/,
    );
  });

  it("refuses an interface that does not exist or has no global IPv6, saying what to do", () => {
    const config = {
      partitionAmount: 1,
      ipv4LocalNetwork: "10.0.0.0/16",
      recorded: new Map(),
      reference: String,
    };
    expect(() => planAddresses({ ...config, interfaceName: "eth9", host })).toThrow(
      "[slapformat] interface_name = eth9: this host has no such interface (it has eth0); set it to the interface that carries this node's global IPv6 address",
    );
    expect(() =>
      planAddresses({ ...config, interfaceName: "eth0", host: hostWith([["fe80::1", 64]]) }),
    ).toThrow(/interface eth0 has no global IPv6 address.*give it one \(e\.g\. 'ip -6 address add/);
  });
});

describeWith(
  [requires.command("python3", "the reference for SlapOS's JSON layout")],
  "format's .slapos-resource",
  () => {
    it("is laid out byte for byte as slapformat's json.dumps(sort_keys=True, indent=4)", async () => {
      const resource = partitionResource({
        reference: "slappart0",
        path: "/srv/slapgrid/slappart0",
        addresses: {
          ipv4: { address: "10.0.0.1", netmask: "255.255.255.255" },
          ipv6: { address: "2001:db8::2", netmask: "ffff:ffff:ffff:ffff::" },
        },
        tap: "slaptap0",
        user: { name: "slapuser0", shell: "/bin/sh", additionalGroups: ["slapsoft"] },
      });
      const python = await execa(
        "python3",
        [
          "-c",
          "import json, sys; sys.stdout.write(json.dumps(json.load(sys.stdin), sort_keys=True, indent=4))",
        ],
        { input: JSON.stringify(resource) },
      );
      expect(serializeResource(resource)).toBe(python.stdout);
    });
  },
);

const ROOT_SETTINGS: FormatSettings = {
  instanceRoot: "/srv/slapgrid",
  softwareRoot: "/opt/slapgrid",
  partitionAmount: 10,
  interfaceName: "eth0",
  createTap: true,
  alterUser: true,
  alterNetwork: true,
};
const CONFIG = "/etc/opt/slapos/slapos.cfg";

/**
 * The partition addresses a clean test host gets (the scheme is in slave/format/addresses.ts):
 * the host at PREFIX::b gives its partitions PREFIX::b:2, PREFIX::b:3, ...
 */
function expectedAddresses(network: TestNetwork, host: TestHost, count: number) {
  const block = `${network.ipv6Prefix}:${(10 + host.index).toString(16)}`;
  return Array.from({ length: count }, (_, n) => ({
    ipv4: `10.0.0.${n + 1}`,
    ipv6: `${block}:${(n + 2).toString(16)}`,
  }));
}

function succeeded(run: FormatRun) {
  if (!run.ok) throw new Error(`format failed: ${run.error}`);
  return run;
}

function failed(run: FormatRun): string {
  if (run.ok) throw new Error(`format should have failed but changed: ${run.result.changed.join("; ")}`);
  return run.error;
}

/** Everything format may touch in a host, to show that a run changed nothing. */
async function snapshot(host: TestHost, roots: string[]): Promise<string> {
  return host.execOrThrow(
    [
      "md5sum /etc/passwd /etc/group /etc/shadow /etc/gshadow",
      `find ${roots.join(" ")} -maxdepth 2 -printf '%p %i %m %U:%G %T@\\n' | sort`,
      "ip -br address show; ip -br link show",
      'for owner in /sys/class/net/*/owner; do [ -e "$owner" ] && echo "$owner $(cat "$owner")"; done; true',
    ].join("\n"),
  );
}

describeWith(testHostRequirements, "format on a test host", () => {
  let network: TestNetwork;
  let host: TestHost;
  let unprivileged: TestHost;
  let first: Extract<FormatRun, { ok: true }>;

  const format = async (settings: Partial<FormatSettings> = {}, on = host) => {
    await writeHostFile(on, CONFIG, formatConfig({ ...ROOT_SETTINGS, ...settings }));
    return runFormat(on, repoRoot, CONFIG);
  };

  beforeAll(async () => {
    network = await TestNetwork.create();
    host = await network.addHost();
    unprivileged = await network.addHost();
  }, 60_000);

  afterAll(async () => {
    await network?.destroy();
  }, 60_000);

  it("formats 10 partitions as root: users, directories, addresses, taps, resource files", async () => {
    first = succeeded(await format());
    const expected = expectedAddresses(network, host, 10);
    const { result } = first;
    expect(result.partitions.map((p) => p.reference)).toEqual(expected.map((_, n) => `slappart${n}`));

    const software = (
      await host.execOrThrow(
        "getent passwd slapsoft; passwd -S slapsoft; stat -c '%U %a' /opt/slapgrid /srv/slapgrid",
      )
    ).split("\n");
    expect(software[0]).toMatch(/^slapsoft:x:\d{3}:\d+::\/opt\/slapgrid:\/usr\/sbin\/nologin$/);
    expect(software[1]?.split(" ")[1]).toBe("L");
    expect(software.slice(2)).toEqual(["slapsoft 755", "root 755"]);

    const links = JSON.parse(await host.execOrThrow("ip -d -j link show")) as {
      ifname: string;
      flags: string[];
      linkinfo?: { info_data?: { type?: string; user?: string } };
    }[];
    const onEth0 = JSON.parse(await host.execOrThrow("ip -j address show dev eth0"))[0].addr_info as {
      local: string;
      prefixlen: number;
      tentative?: boolean;
    }[];
    for (const [n, partition] of result.partitions.entries()) {
      const user = `slapuser${n}`;
      const facts = (
        await host.execOrThrow(
          `getent passwd ${user}; id -nG ${user}; passwd -S ${user}; stat -c '%u %g %a' ${partition.path}; cat /sys/class/net/slaptap${n}/owner`,
        )
      ).split("\n");
      const [, , uid, gid, , home, shell] = (facts[0] ?? "").split(":");
      expect({ uid: Number(uid), home, shell }).toEqual({
        uid: partition.user.uid,
        home: partition.path,
        shell: "/bin/sh",
      });
      expect(Number(uid)).toBeLessThan(1000); // a system user
      expect(facts[1]).toBe(`${user} slapsoft`); // its own group first, then the software group
      expect(facts[2]?.split(" ")[1]).toBe("L");
      expect(facts[3]).toBe(`${uid} ${gid} 750`);
      expect(facts[4]).toBe(uid); // the tap belongs to the partition user

      const tap = links.find((link) => link.ifname === `slaptap${n}`);
      expect(tap?.linkinfo?.info_data?.type).toBe("tap");
      expect(tap?.flags).toContain("UP");

      const addresses = expected[n] ?? { ipv4: "", ipv6: "" };
      expect(partition.addresses).toEqual([
        { address: addresses.ipv4, netmask: "255.255.255.255" },
        { address: addresses.ipv6, netmask: "ffff:ffff:ffff:ffff::" },
      ]);
      expect(onEth0).toContainEqual(expect.objectContaining({ local: addresses.ipv4, prefixlen: 32 }));
      expect(onEth0.find((a) => a.local === addresses.ipv6)).toMatchObject({ prefixlen: 64 });
      expect(onEth0.find((a) => a.local === addresses.ipv6)?.tentative).toBeUndefined();
    }

    const resource = await host.execOrThrow(
      "stat -c %a /srv/slapgrid/slappart3/.slapos-resource; cat /srv/slapgrid/slappart3/.slapos-resource",
    );
    const three = expected[3] ?? { ipv4: "", ipv6: "" };
    expect(resource).toBe(
      `644\n${JSON.stringify(
        {
          address_list: [
            { addr: three.ipv4, netmask: "255.255.255.255" },
            { addr: three.ipv6, netmask: "ffff:ffff:ffff:ffff::" },
          ],
          external_storage_list: [],
          ipv6_range: {},
          path: "/srv/slapgrid/slappart3",
          reference: "slappart3",
          tap: { name: "slaptap3" },
          tun: null,
          user: {
            additional_group_list: ["slapsoft"],
            name: "slapuser3",
            path: "/srv/slapgrid/slappart3",
            shell: "/bin/sh",
          },
        },
        null,
        4,
      )}`,
    );

    // One log line per change, naming its partition, and one summary line.
    const changeLines = first.logs.filter((line) => line.durationMs === undefined);
    expect(changeLines.map((line) => (line.partition ? `${line.partition}: ${line.msg}` : line.msg))).toEqual(
      result.changed,
    );
    for (let n = 0; n < 10; n++) {
      expect(result.changed.filter((change) => change.startsWith(`slappart${n}: `)).length).toBe(7);
    }
    expect(first.logs.at(-1)).toMatchObject({
      msg: `format: ${result.changed.length} changes`,
      partitions: 10,
    });
  });

  it("keeps partition users out of each other's partitions", async () => {
    const as = (user: string, command: string) =>
      host.exec(`setpriv --reuid=${user} --regid=${user} --init-groups -- ${command}`);
    expect((await as("slapuser0", "ls /srv/slapgrid/slappart0")).exitCode).toBe(0);
    const other = await as("slapuser0", "ls /srv/slapgrid/slappart1");
    expect(other.exitCode).not.toBe(0);
    expect(other.stderr).toContain("Permission denied");
    expect((await as("slapuser0", "cat /srv/slapgrid/slappart1/.slapos-resource")).exitCode).not.toBe(0);
    expect((await as("slapuser0", "touch /srv/slapgrid/slappart1/intruder")).exitCode).not.toBe(0);
  });

  it("changes nothing when run again", async () => {
    const before = await snapshot(host, ["/srv/slapgrid", "/opt/slapgrid"]);
    const again = succeeded(await format());
    expect(again.result.changed).toEqual([]);
    expect(again.logs.map((line) => line.msg)).toEqual(["format: nothing to change"]);
    expect(again.result.partitions).toEqual(first.result.partitions);
    expect(await snapshot(host, ["/srv/slapgrid", "/opt/slapgrid"])).toBe(before);
  });

  it("puts back what drifted, with the same addresses", async () => {
    const ipv6 = expectedAddresses(network, host, 10)[4]?.ipv6;
    await host.execOrThrow(
      `chmod 0755 /srv/slapgrid/slappart2 && ip address delete ${ipv6}/64 dev eth0 && gpasswd --delete slapuser5 slapsoft`,
    );
    const repaired = succeeded(await format());
    expect(repaired.result.changed).toEqual([
      "slappart5: added slapuser5 to group slapsoft",
      "slappart2: chmod 0750 /srv/slapgrid/slappart2 (was 0755)",
      `slappart4: added ${ipv6}/64 to eth0`,
    ]);
    expect(
      await host.execOrThrow(
        `stat -c %a /srv/slapgrid/slappart2; id -nG slapuser5; ip -br address show dev eth0`,
      ),
    ).toMatch(new RegExp(`^750\nslapuser5 slapsoft\n.* ${ipv6}/64 `));
    expect(repaired.result.partitions).toEqual(first.result.partitions);
  });

  it("grows from 10 to 12 partitions, adding only the two new ones", async () => {
    const grown = succeeded(await format({ partitionAmount: 12 }));
    const { changed, partitions } = grown.result;
    // Seven changes per new partition, and the address ownership table, which now names them too.
    expect(changed.filter((change) => /^slappart1[01]: /.test(change)).length).toBe(14);
    expect(changed.filter((change) => !/^slappart1[01]: /.test(change))).toEqual([
      "replaced nftables table inet slapos_partitions, which did not match the partitions' addresses and users (12 partitions)",
    ]);
    expect(partitions.slice(0, 10)).toEqual(first.result.partitions);
    const expected = expectedAddresses(network, host, 12);
    expect(partitions.slice(10).map((p) => p.addresses.map((a) => a.address))).toEqual(
      expected.slice(10).map((a) => [a.ipv4, a.ipv6]),
    );
    expect(await host.execOrThrow("id -nG slapuser11; stat -c %a /srv/slapgrid/slappart11")).toBe(
      "slapuser11 slapsoft\n750",
    );
  });

  it("refuses to shrink, and deletes nothing", async () => {
    const before = await snapshot(host, ["/srv/slapgrid", "/opt/slapgrid"]);
    const error = failed(await format({ partitionAmount: 5 }));
    expect(error).toContain(
      "/srv/slapgrid holds formatted partitions beyond [slapformat] partition_amount = 5 (slappart5, slappart6, slappart7, slappart8, slappart9, slappart10, slappart11), and format never removes partitions: set partition_amount = 12 or more",
    );
    expect(await snapshot(host, ["/srv/slapgrid", "/opt/slapgrid"])).toBe(before);
  });

  it("names a missing interface, or one without a global IPv6 address, before changing anything", async () => {
    const elsewhere = { instanceRoot: "/srv/other", softwareRoot: "/opt/other" };
    expect(failed(await format({ ...elsewhere, interfaceName: "eth9" }))).toMatch(
      /^\[slapformat\] interface_name = eth9: this host has no such interface \(it has lo, eth0, slaptap0, .*\); set it to the interface that carries this node's global IPv6 address$/,
    );
    expect(failed(await format({ ...elsewhere, interfaceName: "lo" }))).toMatch(
      /^interface lo has no global IPv6 address/,
    );
    expect((await host.exec("ls /srv/other /opt/other")).exitCode).not.toBe(0);
  });

  it("refuses an address another machine on the link holds, and re-adds it once freed", async () => {
    const third = await network.addHost();
    const wanted = expectedAddresses(network, third, 1)[0]?.ipv6;
    await host.execOrThrow(`ip address add ${wanted}/64 dev eth0 nodad`);
    const settings = { partitionAmount: 1, createTap: false };
    expect(failed(await format(settings, third))).toBe(
      `${wanted} of slappart0 failed duplicate address detection on eth0: another machine on that link uses it: free it there, then run format again`,
    );
    await host.execOrThrow(`ip address delete ${wanted}/64 dev eth0`);
    const retried = succeeded(await format(settings, third));
    expect(retried.result.changed).toEqual([
      `slappart0: re-added ${wanted}/64 to eth0 (it had failed duplicate address detection)`,
    ]);
    expect(await third.execOrThrow(`ip -br address show dev eth0`)).toContain(`${wanted}/64`);
  });

  it("without alter_user and alter_network, as an unprivileged user, makes only directories and resource files", async () => {
    const settings = {
      instanceRoot: "/srv/nobody/instance",
      softwareRoot: "/srv/nobody/software",
      partitionAmount: 3,
      alterUser: false,
      alterNetwork: false,
      createTap: true,
    };
    // A tap the operator made is recorded; the others, which format may not create, are not.
    await unprivileged.execOrThrow(
      "mkdir -p /srv/nobody && chown nobody:nogroup /srv/nobody && ip tuntap add dev slaptap1 mode tap user nobody",
    );
    await writeHostFile(unprivileged, CONFIG, formatConfig({ ...ROOT_SETTINGS, ...settings }));
    const asNobody = () => runFormat(unprivileged, repoRoot, CONFIG, { user: "nobody", group: "nogroup" });
    const before = await snapshot(unprivileged, ["/srv/nobody"]);
    const run = succeeded(await asNobody());

    expect(run.result.changed).toEqual([
      "created /srv/nobody/software (mode 0755)",
      "created /srv/nobody/instance (mode 0755)",
      ...[0, 1, 2].flatMap((n) => [
        `slappart${n}: created /srv/nobody/instance/slappart${n} (mode 0750, owner 65534:65534)`,
        `slappart${n}: wrote /srv/nobody/instance/slappart${n}/.slapos-resource`,
      ]),
    ]);
    const after = await snapshot(unprivileged, ["/srv/nobody"]);
    // Accounts and network as they were: only files under the roots are new.
    expect(after.split("\n").filter((line) => !line.startsWith("/srv/nobody"))).toEqual(
      before.split("\n").filter((line) => !line.startsWith("/srv/nobody")),
    );
    const expected = expectedAddresses(network, unprivileged, 3);
    for (const [n, partition] of run.result.partitions.entries()) {
      expect(partition.user).toEqual({ name: "nobody", uid: 65534, gid: 65534 });
      expect(partition.tap).toBe(n === 1 ? "slaptap1" : null);
      expect(partition.addresses.map((a) => a.address)).toEqual([expected[n]?.ipv4, expected[n]?.ipv6]);
    }
    const resource = JSON.parse(
      await unprivileged.execOrThrow("cat /srv/nobody/instance/slappart1/.slapos-resource"),
    );
    expect(resource.user).toEqual({
      additional_group_list: [],
      name: "nobody",
      path: "/srv/nobody/instance/slappart1",
      shell: "/usr/sbin/nologin",
    });
    expect(await unprivileged.execOrThrow("stat -c '%U %a' /srv/nobody/instance/slappart1")).toBe(
      "nobody 750",
    );

    expect(succeeded(await asNobody()).result.changed).toEqual([]);
    await writeHostFile(
      unprivileged,
      CONFIG,
      formatConfig({ ...ROOT_SETTINGS, ...settings, alterUser: true }),
    );
    expect(failed(await asNobody())).toBe(
      `format with alter_user = true changes the system's users or network, so it must run as root: run it as root, or set alter_user = false in [slapformat] of ${CONFIG}`,
    );
  });
});
