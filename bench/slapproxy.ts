import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa, type ResultPromise } from "execa";
import { request } from "undici";

/** Starts the real slapproxy; resolves (with the process, wrapped: it is a thenable) once it answers. */
export async function startSlapproxy(
  venv: string,
  directory: string,
  port: number,
  computerId: string,
): Promise<{ child: ResultPromise }> {
  const config = join(directory, "slapos.cfg");
  await writeFile(
    config,
    [
      "[slapos]",
      `computer_id = ${computerId}`,
      `master_url = http://127.0.0.1:${port}/`,
      "[slapproxy]",
      "host = 127.0.0.1",
      `port = ${port}`,
      `database_uri = ${join(directory, "proxy.db")}`,
      "",
    ].join("\n"),
  );
  const child = execa(
    `${venv}/bin/slapos`,
    ["--log-file", join(directory, "proxy.log"), "proxy", "start", "--cfg", config],
    {
      reject: false,
    },
  );
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const answer = await request(`http://127.0.0.1:${port}/getRunId`).catch(() => undefined);
    if (answer) {
      await answer.body.text();
      if (answer.statusCode === 200) return { child };
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  child.kill();
  throw new Error(
    `slapproxy did not answer on port ${port} within 30 s (see ${join(directory, "proxy.log")})`,
  );
}
