import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { expect, it } from "vitest";
import { describeWith, requires } from "./support/requirements.js";

// What scripts/setup.sh installs must not only be present but work, for every later test.

const venv = process.env.SLAPOS_VENV ?? "";

describeWith(
  [requires.env("SLAPOS_VENV", "the node's Python venv")],
  "the Python venv (zc.buildout, supervisor, slapos.core)",
  () => {
    it("imports buildout, supervisor and the real slapproxy (which needs libnetworkcache)", async () => {
      const result = await execa(`${venv}/bin/python`, [
        "-c",
        "import zc.buildout, supervisor, slapos.proxy.views, slapos.libnetworkcache; print('ok')",
      ]);
      expect(result.stdout).toBe("ok");
    });

    it("runs a real supervisord that answers over its XML-RPC interface", async () => {
      const directory = await mkdtemp(join(tmpdir(), "supervisord-"));
      const config = join(directory, "supervisord.conf");
      await writeFile(
        config,
        [
          "[unix_http_server]",
          `file=${directory}/supervisor.sock`,
          "[supervisord]",
          `logfile=${directory}/supervisord.log`,
          `pidfile=${directory}/supervisord.pid`,
          "[rpcinterface:supervisor]",
          "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
          "[supervisorctl]",
          `serverurl=unix://${directory}/supervisor.sock`,
          "[program:sleeper]",
          "command=sleep 600",
          "",
        ].join("\n"),
      );
      try {
        await execa(`${venv}/bin/supervisord`, ["-c", config]);
        let status = "";
        for (let attempt = 0; attempt < 50 && !status.includes("RUNNING"); attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          status = (
            await execa(`${venv}/bin/supervisorctl`, ["-c", config, "status", "sleeper"], { reject: false })
          ).stdout;
        }
        expect(status).toMatch(/^sleeper\s+RUNNING/);
      } finally {
        await execa(`${venv}/bin/supervisorctl`, ["-c", config, "shutdown"], { reject: false });
        await rm(directory, { recursive: true, force: true });
      }
    });
  },
);

describeWith(
  [requires.root("switches to an unprivileged user"), requires.env("SLAPOS_VENV", "the node's Python venv")],
  "the Python venv seen by a partition user",
  () => {
    it("is usable by an unprivileged user, as buildout runs as slapsoft and slapuserN", async () => {
      const result = await execa("runuser", ["-u", "nobody", "--", `${venv}/bin/buildout`, "--version"]);
      expect(result.stdout).toMatch(/^buildout version \d/);
    });
  },
);

describeWith(
  [
    requires.env("TEST_DATABASE_URL", "a Postgres server for the tests"),
    requires.command("psql", "the Postgres client"),
  ],
  "the test Postgres server",
  () => {
    it("accepts connections and queries", async () => {
      const result = await execa("psql", [process.env.TEST_DATABASE_URL ?? "", "-Atc", "select 6 * 7"]);
      expect(result.stdout).toBe("42");
    });
  },
);

describeWith([requires.command("pulumi", "the Pulumi CLI")], "the Pulumi CLI", () => {
  it("is a release the Automation API can drive inline programs with (>= 3.181)", async () => {
    const version = (await execa("pulumi", ["version"])).stdout;
    const [major = 0, minor = 0] = version.replace(/^v/, "").split(".").map(Number);
    expect(major === 3 && minor >= 181, `pulumi ${version}`).toBe(true);
    // When setup.sh built it, it is exactly the SDK's version.
    const sdk = createRequire(import.meta.url)("@pulumi/pulumi/package.json").version as string;
    const { stdout: path } = await execa("sh", ["-c", "command -v pulumi"]);
    if (path.includes("/pulumi-slapos/pulumi/")) expect(version).toBe(`v${sdk}`);
  });
});
