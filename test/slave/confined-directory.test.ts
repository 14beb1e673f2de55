import { chown, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ConfinedDirectory, RefusedFileError } from "../../slave/isolation/confined-directory.js";
import { describeWith, requires } from "../support/requirements.js";
import { createThrowawayUser, removeThrowawayUser } from "../support/throwaway-user.js";

// Root working in a directory a hostile user owns: every link, FIFO and hard link the user can
// plant is planted, and nothing root does through ConfinedDirectory may reach the targets.

const TENANT = `slapconf${process.pid % 100000}`;

describeWith([requires.root("chowns to a throwaway user")], "root in a directory its user owns", () => {
  let base: string;
  /** Root's files the tenant wants root to overwrite, chown or read. */
  let secrets: string;
  let home: string;
  let uid: number;
  let gid: number;
  const asTenant = (script: string) =>
    execa("setpriv", [`--reuid=${uid}`, `--regid=${gid}`, "--clear-groups", "--", "sh", "-c", script], {
      cwd: home,
    });

  beforeAll(async () => {
    ({ uid, gid } = await createThrowawayUser(TENANT, "/bin/sh"));
    base = await mkdtemp(join(tmpdir(), "confined-"));
    secrets = join(base, "root");
    await mkdir(secrets, { mode: 0o700 });
    for (const name of ["passwd", "shadow", "cron"]) {
      await writeFile(join(secrets, name), `root's ${name}\n`, { mode: 0o600 });
    }
    home = join(base, "slappart0");
    await mkdir(home, { mode: 0o750 });
    await chown(home, uid, gid);
    // The tenant reaches its home through base; the secrets stay root's (0700).
    await execa("chmod", ["0711", base]);
  });

  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
    await removeThrowawayUser(TENANT);
  });

  async function secretsUntouched() {
    for (const name of ["passwd", "shadow", "cron"]) {
      const file = join(secrets, name);
      expect(await readFile(file, "utf8")).toBe(`root's ${name}\n`);
      const info = await stat(file);
      expect([info.uid, info.gid, info.mode & 0o777]).toEqual([0, 0, 0o600]);
    }
  }

  it("replaces a planted link instead of writing, chowning or chmodding its target", async () => {
    await asTenant(
      `ln -s ${secrets}/passwd buildout.cfg && mkdir -p .slapgrid && ln -s ${secrets} .slapgrid/log && ln -s ${secrets}/cron .timestamp`,
    );
    await ConfinedDirectory.with(home, async (directory) => {
      await directory.write("buildout.cfg", "[buildout]\n", { mode: 0o640, owner: { uid, gid } });
      await directory.write(".timestamp", "1\n", { mode: 0o644 });
      await expect(
        directory.write(".slapgrid/log/instance.log", "output", { mode: 0o640, owner: { uid, gid } }),
      ).rejects.toThrow(RefusedFileError);
      expect(
        await directory.writeIfChanged("buildout.cfg", "[buildout]\n", { mode: 0o640, owner: { uid, gid } }),
      ).toBe(false);
    });
    await secretsUntouched();
    const written = await stat(join(home, "buildout.cfg"));
    expect([written.isFile(), written.uid, written.mode & 0o777]).toEqual([true, uid, 0o640]);
  });

  it("reads no link, FIFO, oversized file or file of another owner, and quotes none of them", async () => {
    await asTenant(
      `ln -s ${secrets}/shadow publish.json && mkfifo fifo && head -c 5000 /dev/zero > big && echo '{}' > mine.json`,
    );
    await ConfinedDirectory.with(home, async (directory) => {
      const refused = await directory.read("publish.json", { maxBytes: 1024 }).catch((error) => error);
      expect(refused).toBeInstanceOf(RefusedFileError);
      expect(String(refused.message)).not.toContain("root's");
      await expect(directory.read("fifo", { maxBytes: 1024 })).rejects.toThrow(/not a regular file/);
      await expect(directory.read("big", { maxBytes: 1024 })).rejects.toThrow(/more than 1024/);
      await expect(directory.read("mine.json", { maxBytes: 1024, owners: [0] })).rejects.toThrow(
        new RegExp(`belongs to uid ${uid}`),
      );
      expect(await directory.read("mine.json", { maxBytes: 1024, owners: [uid] })).toBe("{}\n");
      expect(await directory.read("absent", { maxBytes: 1024 })).toBeNull();
    });
  });

  it("empties the directory without descending into links, even while the tenant swaps them in", async () => {
    await asTenant(`mkdir -p a/b/c && touch a/b/c/f && ln -s / root-link && ln -s ${secrets} keepme`);
    // The tenant races: it keeps swapping a directory for a link to the secrets.
    const racer = asTenant(
      `end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do mkdir -p swap/x 2>/dev/null; touch swap/x/y 2>/dev/null; rm -rf swap; ln -sfn ${secrets} swap; rm -f swap; done`,
    ).catch(() => {});
    for (let round = 0; round < 20; round += 1) {
      // Emptying a directory its owner keeps filling may fail (the agent kills the partition's
      // processes first); following a link into the secrets must never happen.
      await ConfinedDirectory.with(home, (directory) => directory.empty([".keep"])).catch((error) => {
        expect(error.code).toBe("ENOTEMPTY");
      });
    }
    await racer;
    await ConfinedDirectory.with(home, (directory) => directory.empty());
    await secretsUntouched();
    expect((await stat(join(secrets, "passwd"))).isFile()).toBe(true);
  });

  it("refuses to open a partition that is a link, and paths that climb out", async () => {
    await symlink(secrets, join(base, "slappart1"));
    await expect(ConfinedDirectory.open(join(base, "slappart1"))).rejects.toThrow(RefusedFileError);
    await ConfinedDirectory.with(home, async (directory) => {
      await expect(directory.write("../escape", "x", { mode: 0o600 })).rejects.toThrow(
        /not a plain relative path/,
      );
      await expect(directory.read("a/../../root/passwd", { maxBytes: 10 })).rejects.toThrow(
        /not a plain relative path/,
      );
    });
  });
});
