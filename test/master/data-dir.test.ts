import { existsSync } from "node:fs";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterEach, expect, it } from "vitest";
import { type MasterProcess, spawnMaster } from "../../master/spawn.js";
import { MasterClient } from "../../protocol/client.js";
import { describeWith, requires } from "../support/requirements.js";

const CLI = join(import.meta.dirname, "../../dist/cli/main.js");
const RELEASE = "https://example.com/software/web/software.cfg";
// The embedded database: these tests are about its files.
const EMBEDDED = { DATABASE_URL: "" };

/** Every path under `root` (itself included) that its group or others may read, write or enter. */
async function notPrivate(root: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (path: string) => {
    const info = await lstat(path);
    if (info.mode & 0o077) found.push(`${path} ${(info.mode & 0o777).toString(8)}`);
    if (info.isDirectory()) for (const name of await readdir(path)) await visit(join(path, name));
  };
  await visit(root);
  return found;
}

async function stop(master: MasterProcess): Promise<void> {
  master.child.kill("SIGTERM");
  const result = await master.child;
  expect(result.exitCode, String(result.stderr)).toBe(0);
}

describeWith(
  [{ why: "dist/cli/main.js: run `npm run build` first (npm test does)", isMet: () => existsSync(CLI) }],
  "the master's data directory and backups are private",
  () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });
    const temporaryDirectory = async (prefix: string) => {
      const path = await mkdtemp(join(tmpdir(), prefix));
      cleanups.push(() => rm(path, { recursive: true, force: true }));
      return path;
    };
    const start = async (dataDir: string) => {
      const master = await spawnMaster(["--data", dataDir, "--insecure-http", "--port", "0"], EMBEDDED);
      cleanups.push(async () => master.child.kill("SIGKILL"));
      return master;
    };

    it("makes a pre-existing 0755 data directory private, and keeps what the master writes there private", async () => {
      const dataDir = await temporaryDirectory("slap-data-");
      await chmod(dataDir, 0o755);

      const master = await start(dataDir);
      expect(await notPrivate(dataDir)).toEqual([]);

      const client = new MasterClient({ url: master.url });
      try {
        await client.createPerson({ name: "alice" });
        const { computerId } = await client.register((await client.createRegistrationToken()).token);
        await client.uploadPartitions(computerId, [{ reference: "slappart0", addresses: [] }]);
        const instance = await client.requestInstance({ title: "blog", softwareReleaseUrl: RELEASE });
        await client.publishConnectionParameters(instance.id, { password: "p" });
      } finally {
        await client.close();
      }
      expect(await notPrivate(dataDir)).toEqual([]);

      await stop(master);
      expect(await notPrivate(dataDir)).toEqual([]);
    });

    it("tightens a data directory an earlier start left readable by everyone", async () => {
      const dataDir = await temporaryDirectory("slap-data-");
      await stop(await start(dataDir));
      await execa("chmod", ["-R", "go+rwX", dataDir]);
      expect(await notPrivate(dataDir)).not.toEqual([]);

      const master = await start(dataDir);
      expect(await notPrivate(dataDir)).toEqual([]);
      await stop(master);
    });

    it("refuses a data directory that is a symbolic link, and leaves its target alone", async () => {
      const parent = await temporaryDirectory("slap-data-");
      const target = join(parent, "real");
      await mkdir(target, { mode: 0o755 });
      await chmod(target, 0o755);
      await symlink(target, join(parent, "link"));

      for (const given of [join(parent, "link"), `${join(parent, "link")}/`]) {
        const run = await execa(
          "node",
          [CLI, "master", "start", "--data", given, "--insecure-http", "--port", "0"],
          {
            env: EMBEDDED,
            reject: false,
            timeout: 60_000,
          },
        );
        expect(run.exitCode).not.toBe(0);
        expect(run.stderr).toContain("is a symbolic link");
      }
      expect((await lstat(target)).mode & 0o777).toBe(0o755);
      expect(await readdir(target)).toEqual([]);
    });

    describeWith(
      [requires.root("to give a directory to another user")],
      "a data directory of another user",
      () => {
        it("is refused, not chmodded", async () => {
          const dataDir = await temporaryDirectory("slap-data-");
          await chmod(dataDir, 0o777);
          await chown(dataDir, 65534, 65534);
          const run = await execa(
            "node",
            [CLI, "master", "start", "--data", dataDir, "--insecure-http", "--port", "0"],
            {
              env: EMBEDDED,
              reject: false,
              timeout: 60_000,
            },
          );
          expect(run.exitCode).not.toBe(0);
          expect(run.stderr).toContain("belongs to uid 65534, not to the user running the master");
          expect((await lstat(dataDir)).mode & 0o777).toBe(0o777);
          expect(await readdir(dataDir)).toEqual([]);
        });
      },
    );

    it("writes a backup 0600 over an existing 0644 file, and restores into a private directory", async () => {
      const dataDir = await temporaryDirectory("slap-data-");
      await stop(await start(dataDir));
      const outside = await temporaryDirectory("slap-backup-");
      const output = join(outside, "backup.json");
      await writeFile(output, "an older backup", { mode: 0o644 });
      await chmod(output, 0o644);

      const backup = await execa("node", [CLI, "master", "backup", "--data", dataDir, "--output", output], {
        env: EMBEDDED,
        reject: false,
      });
      expect(backup.exitCode, backup.stderr).toBe(0);
      expect((await lstat(output)).mode & 0o777).toBe(0o600);
      expect(JSON.parse(await readFile(output, "utf8")).tables.authority).toHaveLength(1);
      expect(await readdir(outside)).toEqual(["backup.json"]); // no temporary file left behind

      const restored = join(await temporaryDirectory("slap-restore-"), "data");
      await mkdir(restored, { mode: 0o755 });
      await chmod(restored, 0o755);
      const restore = await execa("node", [CLI, "master", "restore", "--data", restored, "--input", output], {
        env: EMBEDDED,
        reject: false,
      });
      expect(restore.exitCode, restore.stderr).toBe(0);
      expect(existsSync(join(restored, "admin.json"))).toBe(true);
      expect(await notPrivate(restored)).toEqual([]);
    });
  },
);
