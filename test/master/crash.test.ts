import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ResultPromise } from "execa";
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnMaster } from "../../master/spawn.js";
import { MasterClient } from "../../protocol/client.js";
import { createPostgresDatabase } from "../support/databases.js";
import { describeWith, requires } from "../support/requirements.js";

const CLI = join(import.meta.dirname, "../../dist/cli/main.js");
const RELEASE = "https://example.com/software/web/software.cfg";
const REQUESTS = 100;

/** Retries a request until the master answers, as a client riding out a master restart does. */
async function persist<T>(attempt: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error as Error).message.startsWith("cannot reach the master")) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describeWith(
  [
    requires.env("TEST_DATABASE_URL", "a real Postgres server that outlives the master process"),
    { why: "dist/cli/main.js: run `npm run build` first (npm test does)", isMet: () => existsSync(CLI) },
  ],
  "master killed and restarted under concurrent requests",
  () => {
    let databaseUrl: string;
    let dropDatabase: () => Promise<void>;
    let dataDir: string;
    let running: ResultPromise | undefined;

    beforeAll(async () => {
      const created = await createPostgresDatabase("slapos_crash");
      databaseUrl = created.url;
      dropDatabase = created.drop;
      dataDir = await mkdtemp(join(tmpdir(), "slap-crash-"));
    });

    afterAll(async () => {
      running?.kill("SIGKILL");
      await dropDatabase?.();
      await rm(dataDir, { recursive: true, force: true });
    });

    // A master as its own process, so it can be killed for real (SIGKILL, no clean shutdown).
    const args = (port: number) => ["--data", dataDir, "--insecure-http", "--port", String(port)];

    it("loses no request and allocates none twice", async () => {
      const first = await spawnMaster(args(0), { DATABASE_URL: databaseUrl });
      running = first.child;
      const port = Number(new URL(first.url).port);
      const client = new MasterClient({ url: first.url }, { timeoutMs: 30_000 });
      try {
        // Capacity for every request, on three computers.
        for (let computer = 0; computer < 3; computer++) {
          const { computerId } = await client.register((await client.createRegistrationToken()).token);
          await client.uploadPartitions(
            computerId,
            Array.from({ length: 40 }, (_, index) => ({ reference: `slappart${index}`, addresses: [] })),
          );
        }

        let answered = 0;
        const killed = new Promise<void>((resolve) => {
          const check = setInterval(() => {
            if (answered >= 10) {
              clearInterval(check);
              resolve();
            }
          }, 5);
        });
        const requests = Array.from({ length: REQUESTS }, (_, index) =>
          persist(() =>
            client.requestInstance({ title: `crash-${index}`, softwareReleaseUrl: RELEASE }),
          ).then((instance) => {
            answered++;
            return instance;
          }),
        );
        await killed;
        const answeredBeforeKill = answered;
        first.child.kill("SIGKILL");
        await first.child;
        const second = await spawnMaster(args(port), { DATABASE_URL: databaseUrl });
        running = second.child;
        const results = await Promise.all(requests);
        expect(answeredBeforeKill).toBeLessThan(REQUESTS); // the kill landed while requests were in flight

        // Every title exists once, placed, each in a partition of its own.
        const instances = await client.listInstances();
        expect(instances).toHaveLength(REQUESTS);
        expect(new Set(instances.map((instance) => instance.title)).size).toBe(REQUESTS);
        const places = instances.map((instance) => `${instance.computerId}/${instance.partitionReference}`);
        expect(instances.every((instance) => instance.partitionReference !== null)).toBe(true);
        expect(new Set(places).size).toBe(REQUESTS);
        // What each client was answered is what the master kept.
        const kept = new Map(instances.map((instance) => [instance.title, instance.id]));
        for (const result of results) expect(kept.get(result.title)).toBe(result.id);
        const busy = (await client.listComputers()).flatMap((computer) =>
          computer.partitions.filter((partition) => partition.state === "busy"),
        );
        expect(busy).toHaveLength(REQUESTS);
      } finally {
        await client.close();
      }
    }, 180_000);
  },
);
