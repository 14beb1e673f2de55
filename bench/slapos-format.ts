import { TestNetwork } from "../test/hosts/network.js";

// The real `slapos node format` (slapos.core) on the same kind of test host as ours, for the
// format figures: users, directories, IPv4 and IPv6 addresses and taps for N partitions.

export interface SlaposFormatResult {
  partitions: number;
  firstRunMs: number;
  reRunMs: number;
  exitCodes: number[];
}

/**
 * Its master URL refuses connections at once: format does all of its local work first and then
 * fails to post the layout ("offline success", exit 2), so the time is the local work's.
 */
export async function benchSlaposFormat(
  options: { partitions: number; venv: string },
  log: (line: string) => void,
): Promise<SlaposFormatResult> {
  const network = await TestNetwork.create();
  try {
    const host = await network.addHost({ sharedReadOnly: [options.venv] });
    const config = [
      "[slapos]",
      "computer_id = COMP-BENCH",
      "master_url = http://127.0.0.1:9/",
      "software_root = /opt/slapgrid",
      "instance_root = /srv/slapgrid",
      "[slapformat]",
      "computer_xml = /opt/slapos/slapos.xml",
      `partition_amount = ${options.partitions}`,
      "interface_name = eth0",
      "ipv4_local_network = 10.200.0.0/16",
      "create_tap = true",
      "partition_has_ipv6_range = false",
      "alter_user = true",
      "alter_network = true",
      "",
    ].join("\n");
    await host.execOrThrow(
      `mkdir -p /etc/opt/slapos /opt/slapos && cat > /etc/opt/slapos/slapos.cfg <<'EOF'\n${config}EOF`,
    );
    const format = async () => {
      const started = performance.now();
      const run = await host.exec(
        `${options.venv}/bin/python -c "import slapos.format as f; f.getPublicIPv4Address = lambda: None; from slapos.cli.entry import main; main()" node format --cfg /etc/opt/slapos/slapos.cfg --now 2>&1`,
      );
      const ms = Math.round(performance.now() - started);
      if (![0, 2].includes(run.exitCode))
        throw new Error(`slapos node format failed (${run.exitCode}): ${run.stdout.slice(-2000)}`);
      return { ms, exitCode: run.exitCode };
    };
    const first = await format();
    log(
      `slapos node format, first run: ${options.partitions} partitions in ${first.ms} ms (exit ${first.exitCode})`,
    );
    const again = await format();
    log(`slapos node format, re-run: ${again.ms} ms (exit ${again.exitCode})`);
    return {
      partitions: options.partitions,
      firstRunMs: first.ms,
      reRunMs: again.ms,
      exitCodes: [first.exitCode, again.exitCode],
    };
  } finally {
    await network.destroy();
  }
}
