import type { Command } from "commander";
import pino from "pino";
import { startMaster } from "../../master/server.js";

/** `slap master start`: runs a master until SIGINT/SIGTERM, then shuts down cleanly. */
export function registerMasterCommands(program: Command): void {
  const master = program.command("master").description("run the SlapOS master");
  master
    .command("start")
    .description("start a master; the first start creates the CA and the admin's client config DIR/admin.json")
    .requiredOption("--data <dir>", "data directory (admin.json, and the embedded database without --database-url)")
    .option("--database-url <url>", "a Postgres server instead of the embedded PGlite (or $DATABASE_URL)")
    .option("--host <host>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0: any free port)", "8443")
    .option("--insecure-http", "plain HTTP on loopback, no identity checks (local use and interop tests)")
    .action(async (options: { data: string; databaseUrl?: string; host: string; port: string; insecureHttp?: boolean }) => {
      const port = Number.parseInt(options.port, 10);
      if (!Number.isInteger(port) || port < 0 || port > 65_535) {
        throw new Error(`--port must be a port number (0-65535), not '${options.port}'`);
      }
      const logger = pino({ name: "slap-master" }, pino.destination(2));
      const running = await startMaster({
        dataDir: options.data,
        databaseUrl: options.databaseUrl ?? process.env.DATABASE_URL,
        host: options.host,
        port,
        insecureHttp: options.insecureHttp,
        logger,
      });
      console.log(running.url);
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
    });
}
