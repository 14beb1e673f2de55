#!/usr/bin/env bash
# Installs every real component the tests and the demo use, and only what is missing:
# Debian packages, the node's Python venv (zc.buildout, supervisor, slapos.core), the Pulumi CLI,
# and a running Postgres server for the tests. Safe to run again: a warm run takes seconds.
# Writes the resulting environment to $SLAPOS_ENV_FILE (see lib.sh); with-env.sh loads it.
#
# Without root it installs nothing system-wide: it reports the missing Debian packages (tests
# that need them say so when skipped) and prepares the rest in a per-user directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

quiet=false
[ "${1:-}" = "--quiet" ] && quiet=true

is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

DEBIAN_PACKAGES=(postgresql openssh-server openssh-client iproute2 iputils-ping python3-venv sudo nftables procps util-linux curl)
# One test server per user: root's and a developer's must not fight over the port.
PG_PORT=${SLAPOS_TEST_PG_PORT:-$((54329 + $(id -u) % 1000))}
VENV="$SLAPOS_TOOLS_DIR/venv"

env_lines=()
missing=()

log() { $quiet || printf '%s\n' "$*"; }
# What takes minutes is said even with --quiet: nobody should wait on a silent terminal.
say() { printf '%s\n' "$*"; }
# step NAME FUNCTION: runs FUNCTION, then prints how long it took.
step() {
  local name=$1 fn=$2 start end
  start=$(date +%s%N)
  log "setup: $name ..."
  "$fn"
  end=$(date +%s%N)
  log "setup: $name done in $(( (end - start) / 1000000 )) ms"
}

# --- Node packages -------------------------------------------------------------------------
install_node_packages() {
  local stamp="$repo/node_modules/.package-lock.sha256" want
  want=$(sha256sum "$repo/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "  node_modules matches package-lock.json"
    return
  fi
  (cd "$repo" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

# --- Debian packages -----------------------------------------------------------------------
install_debian_packages() {
  local absent=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || absent+=("$p")
  done
  if [ ${#absent[@]} -eq 0 ]; then
    log "  all present: ${DEBIAN_PACKAGES[*]}"
    return
  fi
  if ! $is_root; then
    missing+=("Debian packages ${absent[*]} (run 'sudo bash scripts/setup.sh')")
    return
  fi
  log "  installing ${absent[*]}"
  # Packages must not start system daemons (sshd on port 22, a postgres cluster): the tests start
  # their own. policy-rc.d is Debian's switch for that; it is removed again right after.
  local policy=/usr/sbin/policy-rc.d had_policy=false
  [ -e "$policy" ] && had_policy=true
  $had_policy || { printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; }
  local status=0
  {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${absent[@]}" >/dev/null
  } || status=$?
  $had_policy || rm -f "$policy"
  if [ $status -ne 0 ]; then
    echo "error: apt-get could not install ${absent[*]} (exit $status)" >&2
    exit 1
  fi
}

# --- Python venv ---------------------------------------------------------------------------
install_python_venv() {
  local requirements="$here/python-requirements.txt" stamp="$VENV/.requirements.sha256" want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/buildout" ]; then
    log "  reused $VENV"
  else
    # Debian's interpreter, not one under /root: partition users must be able to run the venv.
    [ -d "$VENV" ] || /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --use-pep517 -r "$requirements"
    echo "$want" >"$stamp"
    # Partition users run it; only the venv (and the way to it) is opened, never the Postgres data.
    $is_root && chmod -R a+rX "$VENV" && chmod a+x "$SLAPOS_TOOLS_DIR"
  fi
  env_lines+=("export SLAPOS_VENV='$VENV'")
  log "  $("$VENV/bin/buildout" --version 2>&1), supervisor $("$VENV/bin/supervisord" --version), $("$VENV/bin/slapos" --version 2>&1 | tail -n 1)"
}

# --- Node wheelhouse ----------------------------------------------------------------------
# The wheels of a node's Python environment, which the bootstrapper uploads: nodes need no PyPI.
install_node_wheelhouse() {
  local requirements="$here/node-requirements.txt" want wheels
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  wheels="$SLAPOS_TOOLS_DIR/wheelhouse/$want"
  if [ -f "$wheels/.complete" ]; then
    log "  reused $wheels"
  else
    rm -rf "$wheels.partial" && mkdir -p "$wheels.partial"
    # `pip wheel`, not `download`: two of the recipes are published as source only.
    "$VENV/bin/pip" wheel --quiet --disable-pip-version-check --wheel-dir "$wheels.partial" -r "$requirements"
    cp "$requirements" "$wheels.partial/requirements.txt"
    touch "$wheels.partial/.complete"
    rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
    $is_root && chmod -R a+rX "$SLAPOS_TOOLS_DIR/wheelhouse"
  fi
  env_lines+=("export SLAPOS_WHEELHOUSE='$wheels'")
  log "  $(find "$wheels" -name '*.whl' | wc -l) wheels in $wheels"
}

# --- Test tools venv -----------------------------------------------------------------------
install_test_tools() {
  local venv="$SLAPOS_TOOLS_DIR/test-venv" requirements="$here/test-requirements.txt" want
  local stamp="$venv/.requirements.sha256"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/schemathesis" ]; then
    log "  reused $venv"
  else
    [ -d "$venv" ] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
  fi
  env_lines+=("export SLAPOS_TEST_VENV='$venv'")
  log "  $("$venv/bin/schemathesis" --version)"
}

# --- Pulumi CLI ----------------------------------------------------------------------------
install_pulumi() {
  local PULUMI_VERSION
  PULUMI_VERSION=$(node -p "require('$repo/node_modules/@pulumi/pulumi/package.json').version")
  local own_bin="$SLAPOS_TOOLS_DIR/pulumi/$PULUMI_VERSION/bin" found
  found=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$own_bin" | paste -sd:) command -v pulumi || true)
  if [ -n "$found" ]; then
    log "  using $found ($("$found" version))"
    return
  fi
  if ! command -v go >/dev/null; then
    echo "error: no 'pulumi' on PATH and no Go toolchain to build it; install Pulumi or Go >= 1.24" >&2
    exit 1
  fi
  if [ ! -x "$own_bin/pulumi" ]; then
    say "setup: building the Pulumi CLI v$PULUMI_VERSION from the Go module proxy: 4 to 15 minutes without Go caches, once (log: $SLAPOS_TOOLS_DIR/pulumi-build.log)"
  fi
  if ! PULUMI_VERSION=$PULUMI_VERSION bash "$here/build-pulumi.sh" "$SLAPOS_TOOLS_DIR/pulumi/$PULUMI_VERSION" >"$SLAPOS_TOOLS_DIR/pulumi-build.log" 2>&1; then
    echo "error: building the Pulumi CLI v$PULUMI_VERSION from the Go module proxy failed; last lines of $SLAPOS_TOOLS_DIR/pulumi-build.log:" >&2
    tail -n 20 "$SLAPOS_TOOLS_DIR/pulumi-build.log" >&2
    exit 1
  fi
  while read -r line; do log "  $line"; done < <(grep -E '^(notice|pulumi v)' "$SLAPOS_TOOLS_DIR/pulumi-build.log" || true)
  # The engine looks for bundled plugins next to the pulumi binary (then on PATH), never downloads them.
  install -m 755 "$repo/test/support/pulumi-resource-pulumi-nodejs" "$own_bin/"
  env_lines+=("export PATH='$own_bin':\"\$PATH\"")
  log "  $("$own_bin/pulumi" version) in $own_bin"
}

# --- Node 24 -------------------------------------------------------------------------------
# The current LTS, from the npm registry's `node` package (binary included), beside the machine's
# Node 20: the package's users run either, so its end-to-end tests run on both.
NODE24_VERSION=24.21.0
install_node24() {
  local prefix="$SLAPOS_TOOLS_DIR/node/$NODE24_VERSION" bin
  bin="$prefix/node_modules/.bin/node"
  if [ ! -x "$bin" ] || [ "$("$bin" --version 2>/dev/null)" != "v$NODE24_VERSION" ]; then
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "node@$NODE24_VERSION" >/dev/null
  fi
  env_lines+=("export SLAPOS_NODE24='$bin'")
  log "  node $("$bin" --version) at $bin"
}

# --- The newest @pulumi/pulumi ------------------------------------------------------------
# The newest SDK of the peer range the registry serves, outside the repository (which pins the
# oldest): the package and provider tests run on it too, with Node 24. Offline, the last one stays.
install_newest_pulumi_sdk() {
  local base="$SLAPOS_TOOLS_DIR/pulumi-sdk" version dir
  version=$(npm view '@pulumi/pulumi@>=3 <4' version --json 2>/dev/null |
    node -e 'for (const v of [].concat(JSON.parse(require("fs").readFileSync(0, "utf8")))) console.log(v)' |
    grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' | sort -V | tail -n 1 || true)
  if [ -z "$version" ]; then
    version=$(ls "$base" 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || { missing+=("the newest @pulumi/pulumi (the npm registry did not answer)"); return; }
    log "  the registry did not answer: keeping @pulumi/pulumi $version"
  fi
  dir="$base/$version"
  if [ ! -f "$dir/node_modules/@pulumi/pulumi/package.json" ]; then
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@pulumi/pulumi@$version" >/dev/null
  fi
  env_lines+=("export SLAPOS_NEWEST_PULUMI_SDK='$dir/node_modules/@pulumi/pulumi'")
  log "  @pulumi/pulumi $version in $dir"
}

# --- Postgres ------------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_pg_owner() { if $is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    log "  using TEST_DATABASE_URL from the environment"
    env_lines+=("export TEST_DATABASE_URL='$TEST_DATABASE_URL'")
    return
  fi
  local bin data="$SLAPOS_TOOLS_DIR/postgres/data" sockets="$SLAPOS_TOOLS_DIR/postgres/run"
  bin=$(pg_bin)
  if [ -z "$bin" ]; then
    missing+=("a Postgres server (Debian package postgresql): Postgres-backed tests run on PGlite only")
    return
  fi
  mkdir -p "$data" "$sockets"
  $is_root && chown postgres:postgres "$data" "$sockets"
  # Postgres refuses a data directory that others can read.
  chmod 0700 "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg_owner "$bin/initdb" --pgdata="$data" --auth=trust --username=postgres --encoding=UTF8 >/dev/null
  fi
  if as_pg_owner "$bin/pg_ctl" --pgdata="$data" status >/dev/null 2>&1; then
    log "  reused the running server on 127.0.0.1:$PG_PORT"
  else
    if ! as_pg_owner "$bin/pg_ctl" --pgdata="$data" --log="$data/server.log" --wait \
      --options="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$sockets -c max_connections=300 -c fsync=off" \
      start >/dev/null; then
      echo "error: the test Postgres server did not start on 127.0.0.1:$PG_PORT (SLAPOS_TEST_PG_PORT picks another port); its log:" >&2
      tail -n 5 "$data/server.log" >&2
      exit 1
    fi
    log "  started $("$bin/postgres" --version) on 127.0.0.1:$PG_PORT"
  fi
  env_lines+=("export TEST_DATABASE_URL='postgres://postgres@127.0.0.1:$PG_PORT/postgres'")
}

# --- Test language host --------------------------------------------------------------------
# `pulumi up` in a project directory needs pulumi-language-nodejs, which build-pulumi.sh cannot
# always build. Without a real one, the tests get the stand-in in test/support/language-host,
# last on PATH so that a real host installed later wins.
install_test_language_host() {
  local stand_in="$repo/test/support/language-host" real
  real=$(
    # The tests' PATH: this one without the stand-in, then the lines the steps before wrote.
    PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$stand_in" | paste -sd:)
    for line in "${env_lines[@]}"; do eval "$line"; done
    # The engine runs the one on PATH, else the one beside the resolved pulumi binary.
    beside=$(dirname "$(readlink -f "$(command -v pulumi)")")/pulumi-language-nodejs
    if [ -x "$beside" ]; then echo "$beside"; else command -v pulumi-language-nodejs || true; fi
  )
  if [ -n "$real" ]; then
    log "  using $real"
    return
  fi
  env_lines+=("export PATH=\"\$PATH\":'$stand_in'")
  log "  no pulumi-language-nodejs beside pulumi or on PATH: the tests use $stand_in/pulumi-language-nodejs"
}

write_env_file() {
  mkdir -p "$(dirname "$SLAPOS_ENV_FILE")"
  {
    echo "# Written by scripts/setup.sh; loaded by scripts/with-env.sh."
    printf '%s\n' "${env_lines[@]}"
  } >"$SLAPOS_ENV_FILE"
}

total_start=$(date +%s%N)
mkdir -p "$SLAPOS_TOOLS_DIR"
step "Node packages" install_node_packages
step "Debian packages" install_debian_packages
step "Python venv" install_python_venv
step "Node wheelhouse" install_node_wheelhouse
step "Test tools venv" install_test_tools
step "Pulumi CLI" install_pulumi
step "Node 24" install_node24
step "Newest Pulumi SDK" install_newest_pulumi_sdk
step "Postgres for tests" start_postgres
step "Test language host" install_test_language_host
write_env_file
log "setup: finished in $(( ($(date +%s%N) - total_start) / 1000000 )) ms; environment in $SLAPOS_ENV_FILE"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: not installed (needs root); the tests that need these print why they are skipped:"
  printf '  - %s\n' "${missing[@]}"
fi
