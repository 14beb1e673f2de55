# Shared by setup.sh and with-env.sh: where the toolchain lives and where its environment is written.
# Root installs system-wide under /opt (readable by unprivileged partition users); anyone else gets a
# per-user cache and only the parts that need no root.

if [ "$(id -u)" -eq 0 ]; then
  SLAPOS_TOOLS_DIR=${SLAPOS_TOOLS_DIR:-/opt/pulumi-slapos}
else
  SLAPOS_TOOLS_DIR=${SLAPOS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pulumi-slapos}
fi
SLAPOS_ENV_FILE="$SLAPOS_TOOLS_DIR/env.sh"
