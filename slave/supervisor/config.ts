import { join } from "node:path";
import type { Program } from "./programs.js";

// supervisord's configuration files, in the layout and format slapgrid writes (slapos.core
// grid/templates/*.conf.in), so that a node's instance root reads the same as under SlapOS.

export interface SupervisorPaths {
  configFile: string;
  /** One `<reference>.conf` per partition. */
  includeDirectory: string;
  socket: string;
  logFile: string;
  pidFile: string;
  /**
   * `<directory>/<reference>/<program id>.log`: each program's output, written by supervisord (root)
   * in a root-owned directory the partition's group may read, never inside the partition, where its
   * user could swap the log file for a link to any file root would then write.
   */
  programLogDirectory: string;
}

/** A unix socket path is at most 107 bytes on Linux (sun_path). */
const MAX_SOCKET_PATH = 107;

/**
 * Values go into an INI file that supervisord splits on commas and whitespace and expands `%(...)s`
 * in: refuse what it would misread rather than write a configuration that does something else.
 */
export function assertConfigSafe(value: string, what: string): void {
  if (!/^[\w./@+-]+$/.test(value)) {
    throw new Error(
      `${what} '${value}' cannot go into a supervisord configuration: use only letters, digits and . / @ + - _`,
    );
  }
}

export function supervisorPaths(instanceRoot: string): SupervisorPaths {
  assertConfigSafe(instanceRoot, "the instance root");
  const socket = join(instanceRoot, "sv.sock");
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new Error(
      `supervisord's socket ${socket} is longer than ${MAX_SOCKET_PATH} bytes, the limit of a unix socket path: use a shorter instance_root`,
    );
  }
  return {
    configFile: join(instanceRoot, "etc", "supervisord.conf"),
    includeDirectory: join(instanceRoot, "etc", "supervisord.conf.d"),
    socket,
    logFile: join(instanceRoot, "var", "log", "supervisord.log"),
    pidFile: join(instanceRoot, "var", "run", "supervisord.pid"),
    programLogDirectory: join(instanceRoot, "var", "log", "partitions"),
  };
}

export function renderMainConfig(paths: SupervisorPaths): string {
  return `[unix_http_server]
file = ${paths.socket}
chmod = 0700

[supervisorctl]
serverurl = unix://${paths.socket}

[supervisord]
logfile = ${paths.logFile}
logfile_maxbytes = 50MB
logfile_backups = 10
loglevel = info
pidfile = ${paths.pidFile}
nodaemon = false

[include]
files = ${paths.includeDirectory}/*.conf

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
`;
}

/** Turns a command into the one that runs it confined to its partition (its cgroup), as root, before it execs. */
export type Confine = (argv: string[]) => string[];

export interface PartitionConfig {
  reference: string;
  path: string;
  /** Who the processes run as; null when the agent cannot switch users (it is not root). */
  uid: number | null;
  gid: number | null;
  /**
   * When given (and uid is), each program starts as root inside its partition's cgroup and
   * switches to uid/gid (setpriv) before it execs: every process it ever forks is born confined.
   */
  confine?: Confine;
  userName: string;
  programs: Program[];
  /** The partition's own log directory (`<programLogDirectory>/<reference>`). */
  logDirectory: string;
}

/** Where supervisord writes a program's output. */
export function programLogFile(logDirectory: string, programId: string): string {
  return join(logDirectory, `${programId}.log`);
}

/**
 * A command line supervisord splits back into `argv` (shlex, POSIX): every argument single-quoted.
 * A quote or `%` (supervisord's own expansion) cannot be written so, and is refused.
 */
function commandLine(argv: string[]): string {
  return argv
    .map((arg) => {
      if (/['%\n\r\0]/.test(arg)) {
        throw new Error(`'${arg}' cannot go into a supervisord command line (quote, %, line break or NUL)`);
      }
      return /^[\w./@+=:-]+$/.test(arg) ? arg : `'${arg}'`;
    })
    .join(" ");
}

/**
 * Confined programs start as root, join their cgroup and switch users with setpriv (the
 * partition's uid, gid and that user's groups). Otherwise `user=` takes a uid: supervisord then
 * sets the primary gid and the supplementary groups of that uid's passwd entry. slapgrid also
 * writes `group=`, which supervisor 4 ignores, so it is left out.
 */
export function renderPartitionConfig(partition: PartitionConfig): string {
  const { reference, path, uid, gid, userName, programs, logDirectory, confine } = partition;
  const switchUser = (command: string) =>
    confine && uid !== null && gid !== null
      ? {
          command: commandLine(
            confine(["setpriv", `--reuid=${uid}`, `--regid=${gid}`, "--init-groups", "--", command]),
          ),
          user: [],
        }
      : { command, user: uid === null ? [] : [`user=${uid}`] };
  const group = `[group:${reference}]\nprograms=${programs.map(({ name }) => `${reference}_${name}`).join(",")}\n`;
  const sections = programs.map(({ name, processName, command: program }) => {
    const id = `${reference}_${name}`;
    const { command, user } = switchUser(program);
    const lines = [
      `[program:${id}]`,
      `directory=${path}`,
      `command=${command}`,
      `process_name=${processName}`,
      "autostart=false",
      "autorestart=false",
      "startsecs=0",
      "startretries=0",
      "exitcodes=0",
      "stopsignal=TERM",
      "stopwaitsecs=60",
      "stopasgroup=true",
      "killasgroup=true",
      ...user,
      "serverurl=AUTO",
      "redirect_stderr=true",
      `stdout_logfile=${programLogFile(logDirectory, id)}`,
      "stdout_logfile_maxbytes=100KB",
      "stdout_logfile_backups=1",
      `environment=USER="${userName}",LOGNAME="${userName}",HOME="${path}"`,
    ];
    return `${lines.join("\n")}\n`;
  });
  return [group, ...sections].join("\n");
}
