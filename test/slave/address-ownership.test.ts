import { randomBytes } from "node:crypto";
import { execa, type ResultPromise } from "execa";
import pino from "pino";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import {
  ensureAddressOwnership,
  type OwnedPartition,
  removeAddressOwnership,
  renderOwnershipTable,
} from "../../slave/format/address-ownership.js";
import { ChangeLog } from "../../slave/format/changes.js";
import { SYSTEM_PATH } from "../../slave/run-as.js";
import { describeWith, requires } from "../support/requirements.js";
import { createThrowawayUser, removeThrowawayUser } from "../support/throwaway-user.js";

/** A client: connects from `source` (none: the kernel's choice), sends, prints what comes back. */
const TCP_CLIENT = `
import socket, sys
source, destination, port, payload = sys.argv[1:]
client = socket.socket(socket.AF_INET6 if ":" in destination else socket.AF_INET, socket.SOCK_STREAM)
client.settimeout(1.5)
try:
    if source:
        client.bind((source, 0))
    client.connect((destination, int(port)))
    client.sendall(payload.encode())
    print("received", client.recv(100).decode())
except OSError as error:
    print("failed", type(error).__name__, error.errno)
`;

const UDP_CLIENT = `
import socket, sys
source, destination, port, payload = sys.argv[1:]
client = socket.socket(socket.AF_INET6 if ":" in destination else socket.AF_INET, socket.SOCK_DGRAM)
try:
    client.bind((source, 0))
    client.sendto(payload.encode(), (destination, int(port)))
    print("sent")
except OSError as error:
    print("failed", type(error).__name__, error.errno)
`;

/** A listener that greets its first client with `payload` and says who it was. */
const LISTENER = `
import socket, sys
address, port, payload = sys.argv[1:]
listener = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((address, int(port)))
listener.listen()
listener.settimeout(3)
print("listening", flush=True)
try:
    connection, peer = listener.accept()
    connection.settimeout(2)
    connection.sendall(payload.encode())
    print("accepted", peer[0], flush=True)
    connection.recv(100)
except OSError as error:
    print("failed", type(error).__name__, error.errno, flush=True)
`;

/** Root's server on addresses no partition owns: TCP echo and UDP, each payload printed on arrival. */
const SERVER = `
import socket, sys, threading
port, addresses = int(sys.argv[1]), sys.argv[2:]
def serve_tcp(listener):
    while True:
        connection, peer = listener.accept()
        connection.settimeout(2)
        try:
            data = connection.recv(100)
            sys.stdout.write(f"tcp {peer[0]} {data.decode()}\\n")
            sys.stdout.flush()
            connection.sendall(b"echo " + data)
        except OSError:
            pass
        connection.close()
def serve_udp(receiver):
    while True:
        data, peer = receiver.recvfrom(100)
        sys.stdout.write(f"udp {peer[0]} {data.decode()}\\n")
        sys.stdout.flush()
for address in addresses:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen()
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((address, port))
    threading.Thread(target=serve_tcp, args=(listener,), daemon=True).start()
    threading.Thread(target=serve_udp, args=(receiver,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

const SERVER_PORT = "7000";
const FAMILIES = [
  // Partition addresses as format adds them: IPv4 /32, IPv6 in the interface's prefix.
  { name: "IPv4", server: "192.0.2.1", serverPrefix: 24, a: "192.0.2.10", b: "192.0.2.11", prefix: 32 },
  { name: "IPv6", server: "2001:db8::1", serverPrefix: 64, a: "2001:db8::a", b: "2001:db8::b", prefix: 64 },
] as const;

interface User {
  name: string;
  uid: number;
  gid: number;
}

describeWith(
  [
    requires.root("makes a network namespace and users, and runs processes as them"),
    requires.command("nft", "the table under test (nftables)"),
    requires.command("ip", "the throwaway network namespace (iproute2)"),
    requires.command("setpriv", "runs clients as the partitions' users (util-linux)"),
    requires.command("useradd", "the partitions' users (passwd)"),
    requires.command("python3", "the sockets that send from partition addresses"),
  ],
  "partition address ownership: only a partition's user and root send from its addresses",
  () => {
    const suffix = `${process.pid}${randomBytes(2).toString("hex")}`;
    const netns = `slapos-owner-${suffix}`;
    const userNames = [`slapowna${suffix}`, `slapownb${suffix}`];
    let a: User;
    let b: User;
    let partitions: OwnedPartition[];
    let server: ResultPromise | undefined;
    const serverLines: string[] = [];

    const inNamespace = (command: string[]) => execa("ip", ["netns", "exec", netns, ...command]);

    /** A python program in the namespace, as `user` (root when null), with the system's python. */
    const python = (user: User | null, program: string, args: string[], { timeout = 15_000 } = {}) =>
      execa(
        "ip",
        [
          "netns",
          "exec",
          netns,
          ...(user === null
            ? []
            : ["setpriv", `--reuid=${user.uid}`, `--regid=${user.gid}`, "--clear-groups", "--"]),
          "env",
          `PATH=${SYSTEM_PATH}`,
          "python3",
          "-c",
          program,
          ...args,
        ],
        { reject: false, timeout },
      );

    const run = async (user: User | null, program: string, args: string[]) => {
      const result = await python(user, program, args);
      if (result.exitCode !== 0)
        throw new Error(`python as ${user?.name ?? "root"} failed: ${result.stderr}`);
      return result.stdout.trim();
    };

    /** The server printed this payload: everything sent before it was printed too, in order. */
    const serverSaw = (payload: string) =>
      vi.waitFor(() => expect(serverLines.some((line) => line.endsWith(` ${payload}`))).toBe(true), {
        timeout: 5_000,
      });

    /** A listener as `user` on `address`, once it listens; its outcome when it ends. */
    const listen = async (user: User | null, address: string, port: string, payload: string) => {
      const listener = python(user, LISTENER, [address, port, payload]);
      const ready = new Promise<void>((resolve) => {
        listener.stdout?.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("listening")) resolve();
        });
      });
      await Promise.race([ready, listener]);
      return {
        ended: async () => {
          const { stdout, stderr, exitCode } = await listener;
          if (exitCode !== 0) throw new Error(`listener failed: ${stderr}`);
          return stdout.trim().split("\n").at(-1) ?? "";
        },
      };
    };

    const changeLog = () => new ChangeLog(pino({ level: "silent" }));

    beforeAll(async () => {
      const root = (command: string[]) => execa(command[0] as string, command.slice(1));
      [a, b] = (await Promise.all(userNames.map((name) => createThrowawayUser(name)))) as [User, User];
      await root(["ip", "netns", "add", netns]);
      const ip = (...args: string[]) => root(["ip", "-n", netns, ...args]);
      await ip("link", "set", "lo", "up");
      // A veth pair, both ends here: dummy devices need a module a host may lack.
      await ip("link", "add", "d0", "type", "veth", "peer", "name", "d1");
      await ip("link", "set", "d0", "up");
      await ip("link", "set", "d1", "up");
      for (const family of FAMILIES) {
        const nodad = family.name === "IPv6" ? ["nodad"] : [];
        await ip("address", "add", `${family.server}/${family.serverPrefix}`, "dev", "d0", ...nodad);
        for (const address of [family.a, family.b]) {
          await ip("address", "add", `${address}/${family.prefix}`, "dev", "d0", ...nodad);
        }
      }
      partitions = [
        { reference: "slappart0", user: a, addresses: FAMILIES.map((family) => ({ address: family.a })) },
        { reference: "slappart1", user: b, addresses: FAMILIES.map((family) => ({ address: family.b })) },
      ];
      server = python(null, SERVER, [SERVER_PORT, ...FAMILIES.map((family) => family.server)], {
        timeout: 0,
      });
      let partial = "";
      server.stdout?.on("data", (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split("\n");
        partial = lines.pop() ?? "";
        serverLines.push(...lines);
      });
      await vi.waitFor(() => expect(serverLines).toContain("ready"), { timeout: 10_000 });
    }, 60_000);

    afterAll(async () => {
      server?.kill();
      await server?.catch(() => {});
      await execa("ip", ["netns", "delete", netns], { reject: false });
      // -f: test hosts share this kernel, and a process of theirs may have one of these uids.
      for (const name of userNames) await removeThrowawayUser(name);
    }, 60_000);

    it("is made once: a second run changes nothing, as nft lists exactly what was rendered", async () => {
      const first = changeLog();
      await ensureAddressOwnership(partitions, first, { netns });
      expect(first.made).toEqual([
        "created nftables table inet slapos_partitions: only a partition's user and root may send from its addresses (2 partitions)",
      ]);
      const again = changeLog();
      await ensureAddressOwnership(partitions, again, { netns });
      expect(again.made).toEqual([]);
      const listed = await inNamespace(["nft", "list", "table", "inet", "slapos_partitions"]);
      expect(listed.stdout.replace(/\s+/g, " ")).toBe(renderOwnershipTable(partitions).replace(/\s+/g, " "));
    });

    for (const family of FAMILIES) {
      it(`lets the owner send from its ${family.name} address, over TCP and UDP`, async () => {
        expect(await run(a, TCP_CLIENT, [family.a, family.server, SERVER_PORT, "owner-tcp"])).toBe(
          "received echo owner-tcp",
        );
        expect(serverLines).toContain(`tcp ${family.a} owner-tcp`);
        expect(
          await run(a, UDP_CLIENT, [family.a, family.server, SERVER_PORT, `owner-udp-${family.name}`]),
        ).toBe("sent");
        await serverSaw(`owner-udp-${family.name}`);
        expect(serverLines).toContain(`udp ${family.a} owner-udp-${family.name}`);
      });

      it(`lets another partition's user bind the ${family.name} address but send nothing from it`, async () => {
        // Its SYN is dropped, and retransmitted until the client gives up.
        const tcp = await run(b, TCP_CLIENT, [
          family.a,
          family.server,
          SERVER_PORT,
          `intruder-tcp-${family.name}`,
        ]);
        expect(tcp).toMatch(/^failed /);
        const udp = await run(b, UDP_CLIENT, [
          family.a,
          family.server,
          SERVER_PORT,
          `intruder-udp-${family.name}`,
        ]);
        expect(udp).toBe("failed PermissionError 1");
        // What the intruder sent would have been printed before what the owner sends now.
        await run(a, UDP_CLIENT, [family.a, family.server, SERVER_PORT, `marker-udp-${family.name}`]);
        await serverSaw(`marker-udp-${family.name}`);
        expect(
          await run(a, TCP_CLIENT, [family.a, family.server, SERVER_PORT, `marker-tcp-${family.name}`]),
        ).toBe(`received echo marker-tcp-${family.name}`);
        expect(serverLines.filter((line) => line.includes("intruder"))).toEqual([]);
        // Its own address is its own.
        expect(await run(b, TCP_CLIENT, [family.b, family.server, SERVER_PORT, "b-own"])).toBe(
          "received echo b-own",
        );
      });

      it(`lets no other partition's user serve on the ${family.name} address`, async () => {
        // A client elsewhere (here: root from the server's address), and the owner itself, which a
        // squatter on its address would most like to fool.
        const clients: [User | null, string][] = [
          [null, family.server],
          [a, ""],
        ];
        for (const [client, source] of clients) {
          const squatter = await listen(b, family.a, "7001", "squatter");
          const received = await run(client, TCP_CLIENT, [source, family.a, "7001", "hello"]);
          expect(received).not.toContain("squatter");
          await squatter.ended();
        }
      });

      it(`lets other partitions use the owner's service on its ${family.name} address`, async () => {
        const owner = await listen(a, family.a, "7002", "service");
        expect(await run(b, TCP_CLIENT, ["", family.a, "7002", "hello"])).toBe("received service");
        // The kernel gave the client the destination itself as its source: why traffic to a
        // partition's own address is judged only in the reply direction.
        expect(await owner.ended()).toBe(`accepted ${family.a}`);
      });

      it(`lets root send from the ${family.name} address`, async () => {
        expect(await run(null, TCP_CLIENT, [family.a, family.server, SERVER_PORT, "root-tcp"])).toBe(
          "received echo root-tcp",
        );
        expect(
          await run(null, UDP_CLIENT, [family.a, family.server, SERVER_PORT, `root-udp-${family.name}`]),
        ).toBe("sent");
        await serverSaw(`root-udp-${family.name}`);
        expect(serverLines).toContain(`udp ${family.a} root-udp-${family.name}`);
      });
    }

    it("replaces a table that drifted or whose partitions changed, and is removed", async () => {
      await inNamespace(["nft", "flush", "chain", "inet", "slapos_partitions", "slappart1"]);
      const repaired = changeLog();
      await ensureAddressOwnership(partitions, repaired, { netns });
      expect(repaired.made).toEqual([
        "replaced nftables table inet slapos_partitions, which did not match the partitions' addresses and users (2 partitions)",
      ]);

      // Root's own partition (alter_user = false), with two IPv4 addresses: one uid, a set of addresses.
      const changed: OwnedPartition[] = [
        ...partitions,
        {
          reference: "slappart2",
          user: { uid: 0 },
          addresses: [{ address: "192.0.2.21" }, { address: "192.0.2.20" }],
        },
      ];
      const grown = changeLog();
      await ensureAddressOwnership(changed, grown, { netns });
      expect(grown.made).toHaveLength(1);
      const again = changeLog();
      await ensureAddressOwnership(changed, again, { netns });
      expect(again.made).toEqual([]);

      await removeAddressOwnership({ netns });
      const listed = await inNamespace(["nft", "list", "tables"]);
      expect(listed.stdout).not.toContain("slapos_partitions");
      await removeAddressOwnership({ netns });
    });
  },
);
