/** Namespace files and locks: small, and gone at reboot like the namespaces they pin. */
export const RUN_DIR = "/run/slap-test-hosts";
/** Per-host copies of /etc, /srv, /opt...: on disk, since they may hold software installs. */
export const STATE_DIR = "/var/tmp/slap-test-hosts";
