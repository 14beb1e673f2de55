/** Where the cgroup hierarchies are mounted, as /proc/self/mountinfo lists them. */
export interface CgroupMounts {
  /** Mount points of the unified (v2) hierarchy, in mountinfo order. */
  unified: string[];
  /** The mount point of each v1 controller's hierarchy (`cpu`, `memory`, `name=systemd`...); the first mount wins. */
  v1: Map<string, string>;
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\040`). */
function decodePath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/**
 * The cgroup mounts of a mountinfo text (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS
 * [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS`. A v1 hierarchy's controllers are among its
 * super-options (`rw,cpu,cpuacct`); a v2 hierarchy's are in its own `cgroup.controllers`.
 */
export function parseCgroupMounts(mountinfo: string): CgroupMounts {
  const mounts: CgroupMounts = { unified: [], v1: new Map() };
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    const separator = fields.indexOf("-", 6);
    if (separator < 0) continue;
    const mountPoint = decodePath(fields[4] ?? "");
    const [fsType, , superOptions = ""] = fields.slice(separator + 1);
    if (fsType === "cgroup2") mounts.unified.push(mountPoint);
    else if (fsType === "cgroup") {
      for (const option of superOptions.split(",")) {
        if (!mounts.v1.has(option)) mounts.v1.set(option, mountPoint);
      }
    }
  }
  return mounts;
}
