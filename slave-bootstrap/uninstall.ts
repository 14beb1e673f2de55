import { REMOTE } from "./layout.js";
import { type Progress, step } from "./progress.js";
import { RemoteHost, type SshTarget } from "./ssh.js";

export interface UninstallOptions {
  target: SshTarget;
  /** Keep the partitions' directories (instance data); everything else goes. */
  keepInstanceData?: boolean;
}

export interface UninstallResult {
  /** The computer the host was, for the caller to retire on the master. */
  computerId: string | null;
  removed: string[];
}

/**
 * Addresses and taps format recorded for the partitions, as `ip` commands that remove them:
 * format's own records (`var/format/`), else a partition's `.slapos-resource` only when it is
 * still format's (a regular file of root's: its user may have replaced it to name the host's own
 * addresses). Then the partitions' extras the agent applied, which it records
 * in `var/partition-extras.json` (see slave/extras.ts): routable addresses are removed and block
 * devices given back to root:disk 0660. Then the agent's nftables tables: accounting, and who
 * may send from partition addresses (slave/format/address-ownership.ts).
 */
const REMOVE_NETWORK = `
interface=$(sed -n 's/^interface_name *= *//p' ${REMOTE.config} 2>/dev/null)
for partition in ${REMOTE.instanceRoot}/slappart*; do
  [ -d "$partition" ] || continue
  python3 - "${REMOTE.instanceRoot}/var/format/$(basename "$partition").slapos-resource" "$partition/.slapos-resource" "$interface" <<'PY'
import ipaddress, json, os, stat, subprocess, sys
def formats(path):
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor) as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_size > 65536:
            return None
        return json.loads(file.read())
resource = formats(sys.argv[1]) or formats(sys.argv[2]) or {}
interface = sys.argv[3] or "eth0"
for entry in resource.get("address_list", []):
    prefix = bin(int(ipaddress.ip_address(entry["netmask"]))).count("1")
    subprocess.run(["ip", "addr", "del", f"{entry['addr']}/{prefix}", "dev", interface], stderr=subprocess.DEVNULL)
tap = (resource.get("tap") or {}).get("name")
if tap:
    subprocess.run(["ip", "link", "del", tap], stderr=subprocess.DEVNULL)
PY
done
if [ -e ${REMOTE.instanceRoot}/var/partition-extras.json ]; then
  python3 - ${REMOTE.instanceRoot}/var/partition-extras.json <<'PY'
import grp, json, os, stat, subprocess, sys
for extras in json.load(open(sys.argv[1])).values():
    routable = extras.get("routableIpv4")
    if routable:
        subprocess.run(["ip", "addr", "del", routable["address"] + "/32", "dev", routable["interface"]], stderr=subprocess.DEVNULL)
    device = extras.get("blockDevice")
    if device and os.path.exists(device) and stat.S_ISBLK(os.stat(device).st_mode):
        try:
            disk = grp.getgrnam("disk").gr_gid
        except KeyError:
            disk = 0
        os.chown(device, 0, disk)
        os.chmod(device, 0o660)
PY
fi
nft delete table inet slapos_accounting 2>/dev/null || true
nft delete table inet slapos_partitions 2>/dev/null || true
`;

/** The partitions' cgroups (slave/isolation/cgroups.ts), once their processes are gone. */
const REMOVE_CGROUPS = `
name=$(sed -n 's/^cgroup_name *= *//p' ${REMOTE.config} 2>/dev/null)
computer=$(sed -n 's/^computer_id *= *//p' ${REMOTE.config} 2>/dev/null)
name=\${name:-slapos}.$computer
for mount in $(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup" || $(i + 1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | sort -u); do
  [ -d "$mount/$name" ] && find "$mount/$name" -depth -type d -exec rmdir {} \\; 2>/dev/null
done
true
`;

/**
 * Stops the agent's service, the agent, supervisord (which stops the instances), then whatever a
 * partition user still runs. Only processes of this system count: those sharing our mount
 * namespace (several test hosts share one kernel's process table; a container's processes are
 * not ours either).
 */
const STOP_PROCESSES = `python3 - <<'PY'
import os, pwd, re, signal, time
me = os.readlink("/proc/self/ns/mnt")
users = {entry.pw_uid for entry in pwd.getpwall() if re.fullmatch(r"slapuser\\d+|slapsoft", entry.pw_name)}
markers = ["${REMOTE.serviceScript}", "${REMOTE.agent}", "${REMOTE.instanceRoot}/etc/supervisord.conf"]

# This script and the shells that run it hold the markers in their own command lines.
mine, pid = set(), os.getpid()
while pid > 1:
    mine.add(pid)
    pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])

def ours():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(pid) in mine or os.readlink(f"/proc/{pid}/ns/mnt") != me:
                continue
            command = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").replace("\\0", " ")
            rank = next((index for index, marker in enumerate(markers) if marker in command), None)
            if rank is None and os.stat(f"/proc/{pid}").st_uid in users:
                rank = len(markers)
            if rank is not None:
                found.append((rank, int(pid)))
        except OSError:
            pass
    return sorted(found)

for rank in range(len(markers) + 1):
    for _, pid in [entry for entry in ours() if entry[0] == rank]:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + (70 if rank == 2 else 5)
    while time.time() < deadline and any(entry[0] == rank for entry in ours()):
        time.sleep(0.1)
for _, pid in ours():
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
PY
systemctl disable --now slap-agent 2>/dev/null || true
`;

// -f: our processes are stopped by now; userdel would still see another system's processes of the
// same uid where several share a kernel (test hosts).
const REMOVE_USERS = `
for user in $(getent passwd | cut -d: -f1 | grep -E '^(slapuser[0-9]+|slapsoft)$'); do userdel -f "$user" 2>/dev/null; done
for group in $(getent group | cut -d: -f1 | grep -E '^(slapuser[0-9]+|slapsoft)$'); do groupdel "$group" 2>/dev/null; done
true
`;

/**
 * Undoes a bootstrap: stops the agent and every instance, removes the addresses, taps, cgroups and
 * nftables tables (address ownership, accounting) format and the agent made, the users, and every
 * directory and file of ours (instance data kept when asked). Safe to run again, or on a host that
 * was never finished.
 */
export async function uninstall(
  options: UninstallOptions,
  progress: Progress = () => {},
): Promise<UninstallResult> {
  const remote = await RemoteHost.connect(options.target);
  const removed: string[] = [];
  try {
    const computerId =
      (
        await remote.run(`sed -n 's/^computer_id *= *//p' ${REMOTE.config} 2>/dev/null`, { sudo: true })
      ).stdout.trim() || null;
    const run = async (name: string, script: string) => {
      await step(progress, name, async () => {
        await remote.runOrThrow(script, { sudo: true, timeoutMs: 180_000 });
        removed.push(name);
        return { changed: true };
      });
    };
    await run("processes", STOP_PROCESSES);
    await run("network", REMOVE_NETWORK);
    await run("cgroups", REMOVE_CGROUPS);
    await run(
      "files",
      [
        `rm -rf ${REMOTE.pythonEnvironment} ${REMOTE.softwareRoot} /etc/opt/slapos ${REMOTE.serviceLog} ${REMOTE.servicePid} ${REMOTE.systemdUnit}`,
        options.keepInstanceData
          ? `find ${REMOTE.instanceRoot} -mindepth 1 -maxdepth 1 ! -name 'slappart*' -exec rm -rf {} +`
          : `rm -rf ${REMOTE.instanceRoot}`,
        "systemctl daemon-reload 2>/dev/null || true",
      ].join("\n"),
    );
    await run("users", REMOVE_USERS);
    return { computerId, removed };
  } finally {
    remote.close();
  }
}
