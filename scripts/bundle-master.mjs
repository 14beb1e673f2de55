// Makes the master software release, dist/master-release/: its buildout profile and description
// (examples/software/master), the master and its instances' steps bundled into one file
// (dist/examples/software/master/cli.js, built by tsc) with the files it reads beside it, so that
// a node runs it with Node alone: PGlite's WebAssembly module, initdb and initial cluster (PGlite
// finds them next to the importing module) and the schema migrations (master/db/connect.ts, the
// same).
import { copyFile, mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { bundleForNode } from "./node-bundle.mjs";

const OUT = "dist/master-release";
const { version } = JSON.parse(await readFile("package.json", "utf8"));

await rm(OUT, { recursive: true, force: true });
await mkdir(join(OUT, "migrations", "meta"), { recursive: true });

await bundleForNode("dist/examples/software/master/cli.js", join(OUT, "slap-master.mjs"), {
  define: { "process.env.SLAP_MASTER_VERSION": JSON.stringify(version) },
});

for (const name of ["software.cfg", "software.cfg.json"]) {
  await copyFile(join("examples/software/master", name), join(OUT, name));
}
const pglite = dirname(createRequire(import.meta.url).resolve("@electric-sql/pglite"));
for (const name of ["pglite.wasm", "pglite.data", "initdb.wasm"]) {
  await copyFile(join(pglite, name), join(OUT, name));
}
// Drizzle's migrator reads the journal and the SQL files; the snapshots are drizzle-kit's.
for (const name of await readdir("master/db/migrations")) {
  if (name.endsWith(".sql"))
    await copyFile(join("master/db/migrations", name), join(OUT, "migrations", name));
}
await copyFile("master/db/migrations/meta/_journal.json", join(OUT, "migrations", "meta", "_journal.json"));

// The master's database release, which SelfHostedMaster uploads beside it.
const POSTGRESQL_OUT = "dist/postgresql-release";
await mkdir(POSTGRESQL_OUT, { recursive: true });
for (const name of ["software.cfg", "software.cfg.json"]) {
  await copyFile(join("examples/software/postgresql", name), join(POSTGRESQL_OUT, name));
}

const size = (await stat(join(OUT, "slap-master.mjs"))).size;
console.log(`${OUT}: slap-master.mjs ${(size / 1e6).toFixed(1)} MB, version ${version}`);
