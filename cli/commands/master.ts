import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import pino from "pino";

/**
 * `slap master start` runs a master until SIGINT/SIGTERM, then shuts down cleanly;
 * `slap master backup|restore` dump and rebuild its whole state.
 */
export function registerMasterCommands(program: Command): void {
  const master = program.command("master").description("run the SlapOS master");
  master
    .command("start")
    .description(
      "start a master; the first start creates the CA and the admin's client config DIR/admin.json",
    )
    .requiredOption(
      "--data <dir>",
      "data directory (admin.json, and the embedded database without --database-url)",
    )
    .option("--database-url <url>", "a Postgres server instead of the embedded PGlite (or $DATABASE_URL)")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "8443")
    .option("--insecure-http", "plain HTTP on loopback, no identity checks (local use and interop tests)")
    .option(
      "--public-url <url>",
      "the URL clients use, when not the listener's own (behind a relay): named in the certificate and admin.json",
    )
    .action(
      async (options: {
        data: string;
        databaseUrl?: string;
        host: string;
        port: string;
        insecureHttp?: boolean;
        publicUrl?: string;
      }) => {
        const port = Number.parseInt(options.port, 10);
        if (!Number.isInteger(port) || port < 0 || port > 65_535) {
          throw new Error(`--port must be a port number (0-65535), not '${options.port}'`);
        }
        keepNewFilesPrivate();
        // Loaded here, not at the top: the node agent runs from the same CLI and must not carry the master.
        const { LOG_REDACTION } = await import("../../master/api/log-error.js");
        const logger = pino({ name: "slap-master", redact: LOG_REDACTION }, pino.destination(2));
        const { startMaster } = await import("../../master/server.js");
        const running = await startMaster({
          dataDir: options.data,
          databaseUrl: options.databaseUrl ?? process.env.DATABASE_URL,
          host: options.host,
          port,
          insecureHttp: options.insecureHttp,
          publicUrl: options.publicUrl,
          logger,
        });
        let stopping = false;
        const stop = async (signal: string) => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, "shutting down");
          await running.close();
          process.exit(0);
        };
        process.on("SIGINT", () => void stop("SIGINT"));
        process.on("SIGTERM", () => void stop("SIGTERM"));
        // Printed last: whoever waits for the URL may signal the master as soon as it reads it.
        console.log(running.url);
      },
    );
  addBackupCommands(master);
}

/**
 * Everything a master process writes is private (database files, keys, backups), so its umask
 * says so. Only the CLI sets it: it is process-wide, and startMaster may run inside a program
 * that writes other files (startMaster makes the data directory private itself).
 */
function keepNewFilesPrivate(): void {
  process.umask(0o077);
}

interface OfflineOptions {
  data: string;
  databaseUrl?: string;
}

/** Opens a master's database without serving it (backup, restore). */
async function openOffline(options: OfflineOptions, purpose: string) {
  const { claimDataDir, secureDataDir } = await import("../../master/data-dir.js");
  const { openDatabase } = await import("../../master/db/connect.js");
  keepNewFilesPrivate();
  const databaseUrl = options.databaseUrl ?? process.env.DATABASE_URL;
  await secureDataDir(options.data);
  const release = databaseUrl ? async () => {} : await claimDataDir(options.data, purpose);
  const database = await openDatabase({ databaseUrl, dataDir: options.data });
  return {
    database,
    async close() {
      await database.close();
      // A restore creates a fresh PGlite cluster, which PGlite copies in world-readable.
      await secureDataDir(options.data);
      await release();
    },
  };
}

function addBackupCommands(master: Command): void {
  master
    .command("backup")
    .description("write a consistent dump of the whole state (database and CA) to a file")
    .requiredOption("--data <dir>", "the master's data directory")
    .option("--database-url <url>", "the master's Postgres server (or $DATABASE_URL)")
    .requiredOption("--output <file>", "where to write the backup (mode 0600: it holds the CA key)")
    .action(async (options: OfflineOptions & { output: string }) => {
      const { createBackup } = await import("../../master/backup.js");
      const { writePrivateFile } = await import("../../master/data-dir.js");
      const adminConfig = await readFile(join(options.data, "admin.json"), "utf8")
        .then((text) => JSON.parse(text) as unknown)
        .catch(() => undefined);
      const opened = await openOffline(options, "backup");
      try {
        const backup = await createBackup(opened.database, adminConfig);
        await writePrivateFile(options.output, JSON.stringify(backup));
        const counts = Object.entries(backup.tables).map(([table, rows]) => `${table}=${rows.length}`);
        console.log(`backup written to ${options.output}: ${counts.join(" ")}`);
      } finally {
        await opened.close();
      }
    });
  master
    .command("restore")
    .description("rebuild a fresh master (new data directory or empty database) from a backup")
    .requiredOption("--data <dir>", "the new master's data directory")
    .option("--database-url <url>", "an empty Postgres database for the new master (or $DATABASE_URL)")
    .requiredOption("--input <file>", "the backup file")
    .action(async (options: OfflineOptions & { input: string }) => {
      const { restoreBackup } = await import("../../master/backup.js");
      const { writePrivateFile } = await import("../../master/data-dir.js");
      const backup = JSON.parse(await readFile(options.input, "utf8"));
      const opened = await openOffline(options, "restore");
      try {
        const counts = await restoreBackup(opened.database, backup);
        const adminPath = join(options.data, "admin.json");
        if (backup.adminConfig && !(await readFile(adminPath).catch(() => undefined))) {
          await writePrivateFile(adminPath, `${JSON.stringify(backup.adminConfig, null, 2)}\n`);
        }
        console.log(
          `restored into ${options.data}: ${Object.entries(counts)
            .map(([table, rows]) => `${table}=${rows}`)
            .join(" ")}`,
        );
      } finally {
        await opened.close();
      }
    });
}
