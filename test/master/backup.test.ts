import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, expect, it } from "vitest";
import { createBackup, restoreBackup } from "../../master/backup.js";
import { openDatabase } from "../../master/db/connect.js";
import { requestInstance, setConnectionParameters } from "../../master/model/instances.js";
import { createOrganisation, setOrganisationMember } from "../../master/model/organisations.js";
import { supplySoftware } from "../../master/model/software.js";
import { startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";
import { addComputer, createMarketplace } from "./fixtures.js";

const RELEASE = "https://example.com/software/web/software.cfg";
const everyRequirement = testDatabaseKinds.flatMap((kind) => kind.requirements);

describeWith(everyRequirement, "master backup and restore", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  for (const source of testDatabaseKinds) {
    for (const target of testDatabaseKinds) {
      it(`restores a ${source.name} master into a fresh ${target.name} database, every row intact`, async () => {
        const from = await source.open();
        cleanups.push(() => from.dispose());
        const market = await createMarketplace(from);
        const computer = await addComputer(from, market, market.bob, 3, {
          allocationScope: "open",
          region: "eu",
          pricePerPartitionHour: 1.5,
        });
        await supplySoftware(from.db, market.bob, computer.id, RELEASE, "available");
        // Memberships decide what organisation-scoped computers admit: a restore must keep them.
        const organisation = await createOrganisation(from.db, market.bob, { title: "bob's" });
        await setOrganisationMember(from.db, market.bob, organisation.id, market.alice.id, "member");
        const root = await requestInstance(from.db, market.alice, {
          title: "root",
          softwareReleaseUrl: RELEASE,
        });
        await requestInstance(
          from.db,
          { kind: "instance", id: root.id },
          { title: "child", softwareReleaseUrl: RELEASE },
        );
        await setConnectionParameters(from.db, { kind: "instance", id: root.id }, root.id, {
          url: "http://x/ é",
        });
        const backup = await createBackup(from);

        const to = await target.open();
        cleanups.push(() => to.dispose());
        const counts = await restoreBackup(to, JSON.parse(JSON.stringify(backup)));
        expect(counts).toMatchObject({
          persons: 3,
          organisations: 1,
          organisation_members: 2,
          computers: 1,
          partitions: 3,
          software_instances: 2,
          contracts: 2,
        });
        const again = await createBackup(to);
        expect(again.tables).toEqual(backup.tables);

        // Identity columns continue after the restored rows.
        const next = await requestInstance(to.db, market.alice, {
          title: "after-restore",
          softwareReleaseUrl: RELEASE,
        });
        expect(next.partitionReference).toBe("slappart2");
        await expect(restoreBackup(to, backup)).rejects.toThrow(/already holds a master's state/);
      });
    }
  }

  it("brings a master back in a new data directory, where the old certificates still authenticate", async () => {
    const silent = pino({ level: "silent" });
    const oldDir = await mkdtemp(join(tmpdir(), "slap-backup-old-"));
    const newDir = await mkdtemp(join(tmpdir(), "slap-backup-new-"));
    cleanups.push(() => rm(oldDir, { recursive: true, force: true }));
    cleanups.push(() => rm(newDir, { recursive: true, force: true }));

    const first = await startMaster({ dataDir: oldDir, logger: silent });
    const adminConfig = JSON.parse(await readFile(first.adminConfigPath, "utf8"));
    const admin = new MasterClient(adminConfig);
    const registration = await admin.register((await admin.createRegistrationToken()).token, "kept");
    await admin.close();
    const backup = await createBackup(first.database, adminConfig);
    await first.close();
    await writeFile(join(newDir, "backup.json"), JSON.stringify(backup));

    const restoredDatabase = await openDatabase({ dataDir: newDir });
    await restoreBackup(restoredDatabase, JSON.parse(await readFile(join(newDir, "backup.json"), "utf8")));
    await restoredDatabase.close();
    await writeFile(join(newDir, "admin.json"), JSON.stringify(backup.adminConfig));

    const second = await startMaster({ dataDir: newDir, logger: silent });
    cleanups.push(() => second.close());
    const config = JSON.parse(await readFile(second.adminConfigPath, "utf8"));
    expect(config.url).toBe(second.url); // admin.json follows the new listener
    const restoredAdmin = new MasterClient(config);
    const node = new MasterClient({
      url: second.url,
      ca: config.ca,
      certificate: registration.certificate,
      key: registration.privateKey,
    });
    try {
      expect((await restoredAdmin.listComputers()).map((computer) => computer.title)).toEqual(["kept"]);
      expect((await node.desiredState(registration.computerId)).computerId).toBe(registration.computerId);
    } finally {
      await restoredAdmin.close();
      await node.close();
    }
  });
});
