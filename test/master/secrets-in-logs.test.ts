import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { sql } from "drizzle-orm";
import pino from "pino";
import { afterEach, expect, it } from "vitest";
import { startMaster } from "../../master/server.js";
import { MasterClient } from "../../protocol/client.js";
import { marshal } from "../../protocol/xml-marshaller.js";
import { createPostgresDatabase, testDatabaseKinds } from "../support/databases.js";
import { describeWith } from "../support/requirements.js";

const RELEASE = "https://example.com/software/web/software.cfg";

const secret = (what: string) => `${what}-${randomBytes(8).toString("hex")}`;

/**
 * Makes the database refuse writes the way a real fault would: inserted instances fail in a
 * trigger whose error message quotes the title (as Postgres's input errors quote values), and
 * any other write to these tables violates a check constraint (whose detail is the whole row).
 */
const REFUSE_WRITES = [
  `create function refuse_in_test() returns trigger language plpgsql as $$
     begin perform new.title::uuid; return new; end $$`,
  `create trigger refuse_in_test before insert on software_instances
     for each row execute function refuse_in_test()`,
  ...["software_instances", "certificates", "registration_tokens", "computers"].map(
    (table) => `alter table ${table} add constraint refuse_in_test check (false) not valid`,
  ),
];

describeWith(
  testDatabaseKinds.flatMap((kind) => kind.requirements),
  "a failing statement's values stay out of the master's log",
  () => {
    const cleanups: (() => Promise<unknown>)[] = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    for (const kind of testDatabaseKinds) {
      it(`logs the failures, not the secrets they were about (${kind.name})`, async () => {
        const dataDir = await mkdtemp(join(tmpdir(), "slap-secrets-"));
        cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
        let databaseUrl: string | undefined;
        if (kind.name === "postgres") {
          const created = await createPostgresDatabase("slapos_secrets");
          cleanups.push(() => created.drop());
          databaseUrl = created.url;
        }
        const lines: string[] = [];
        const sink = new Writable({
          write(chunk, _encoding, done) {
            lines.push(...chunk.toString().split("\n").filter(Boolean));
            done();
          },
        });
        // pino's defaults, as `slap master start` but without its redaction: the handlers alone
        // must keep the values out.
        const master = await startMaster({ dataDir, databaseUrl, insecureHttp: true, logger: pino(sink) });
        cleanups.push(() => master.close());

        const client = new MasterClient({ url: master.url });
        cleanups.push(() => client.close());
        const { computerId } = await client.register((await client.createRegistrationToken()).token);
        await client.uploadPartitions(computerId, [
          { reference: "slappart0", addresses: [] },
          { reference: "slappart1", addresses: [] },
        ]);
        const running = await client.requestInstance({ title: "running", softwareReleaseUrl: RELEASE });
        expect(running.partitionReference).toBe("slappart0");
        const { token } = await client.createRegistrationToken();

        for (const statement of REFUSE_WRITES) await master.database.db.execute(sql.raw(statement));

        const secrets = {
          token,
          tokenHash: createHash("sha256").update(token).digest("hex"),
          slapTitle: secret("slap-title"),
          slapParameter: secret("slap-db-password"),
          slapConnection: secret("slap-connection"),
          jsonTitle: secret("json-title"),
          jsonParameter: secret("json-db-password"),
          jsonConnection: secret("json-connection"),
          computerTitle: secret("computer-title"),
        };
        const post = (path: string, body: URLSearchParams | object) =>
          fetch(new URL(path, master.url), {
            method: path.includes("connection-parameters") ? "PUT" : "POST",
            ...(body instanceof URLSearchParams
              ? { body }
              : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
          });
        const answers = await Promise.all([
          post(
            "requestComputerPartition",
            new URLSearchParams({
              partition_reference: secrets.slapTitle,
              software_release: RELEASE,
              partition_parameter_xml: marshal({ db_password: secrets.slapParameter }),
            }),
          ),
          post(
            "setComputerPartitionConnectionXml",
            new URLSearchParams({
              computer_id: computerId,
              computer_partition_id: "slappart0",
              connection_xml: marshal({ password: secrets.slapConnection }),
            }),
          ),
          post("api/v1/instances", {
            title: secrets.jsonTitle,
            softwareReleaseUrl: RELEASE,
            parameters: { db_password: secrets.jsonParameter },
          }),
          post(`api/v1/instances/${running.id}/connection-parameters`, {
            parameters: { password: secrets.jsonConnection },
          }),
          post("api/v1/register", { token, title: secrets.computerTitle }),
          // Issues the instance's certificate: its private key goes into the refused row.
          fetch(new URL(`api/v1/instances/${running.id}/credentials`, master.url)),
        ]);
        const bodies = await Promise.all(answers.map((answer) => answer.text()));

        // The database refused every call.
        expect(answers.map((answer) => answer.status)).toEqual([500, 500, 500, 500, 500, 500]);
        const planted = { ...secrets, privateKey: "PRIVATE KEY" };
        const leaks = Object.entries(planted).flatMap(([name, value]) => [
          ...(lines.some((line) => line.includes(value)) ? [`${name} in the log`] : []),
          ...(bodies.some((body) => body.includes(value)) ? [`${name} in an answer`] : []),
        ]);
        expect(leaks).toEqual([]);

        // Every call reached the database and failed there (check violations, and the trigger's
        // invalid input), and the log still says so usefully.
        const failures = lines.map((line) => JSON.parse(line)).filter((entry) => entry.level === 50);
        expect(failures).toHaveLength(6);
        const codes = failures.map(
          (entry) => JSON.stringify(entry.error).match(/"code":"(22P02|23514)"/)?.[1],
        );
        expect(codes.sort()).toEqual(["22P02", "22P02", "23514", "23514", "23514", "23514"]);
        expect(lines.join("\n")).toContain("refuse_in_test");
      });
    }
  },
);
