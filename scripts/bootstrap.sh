#!/bin/sh
# The one way into this repository on any machine with npm: `npm start`, `npm test` and the
# other npm scripts call this. It makes sure of Node 24 (from the npm registry into
# .cache/node24 when the Node on PATH is another version; the system Node is never touched),
# installs the dependencies with it (again when package-lock.json changed or another Node
# built them), then runs the command:
#
#   sh scripts/bootstrap.sh start            the service (services/connector/src/main.ts)
#   sh scripts/bootstrap.sh test [ARGS]      checks what the tests need, then vitest run ARGS
#   sh scripts/bootstrap.sh run CMD [ARGS]   any command with Node 24 first on PATH
set -eu

NODE_MAJOR=24
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"

say() { printf 'warden: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none; }

# --- Node 24 ---------------------------------------------------------------------------------
if [ "$(node_major)" != "$NODE_MAJOR" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-x64 ;;
    Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
    Darwin-x86_64) platform=darwin-x64 ;;
    Darwin-arm64) platform=darwin-arm64 ;;
    *) die "Node.js $NODE_MAJOR is required and there is no npm package of it for $(uname -s) $(uname -m): install Node.js $NODE_MAJOR and put it first on PATH" ;;
  esac
  cache="$root/.cache/node$NODE_MAJOR"
  node_home="$cache/node_modules/node-$platform"
  if [ ! -x "$node_home/bin/node" ]; then
    command -v npm >/dev/null 2>&1 || die "Node.js $NODE_MAJOR is required and npm is not on PATH to fetch it: install Node.js $NODE_MAJOR"
    say "Node.js $NODE_MAJOR is required (PATH has $(node --version 2>/dev/null || echo no node)); fetching node-$platform@$NODE_MAJOR from the npm registry into .cache/node$NODE_MAJOR"
    mkdir -p "$cache"
    # --prefix makes .cache/node24 its own tiny project, outside this repository's workspaces.
    npm install --prefix "$cache" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
      "node-$platform@$NODE_MAJOR" >&2
  fi
  PATH="$node_home/bin:$PATH"
  export PATH
  # Set by an npm that ran on the other Node; node-gyp and friends would pick that Node up.
  unset NODE npm_node_execpath npm_config_node_gyp 2>/dev/null || true
  [ "$(node_major)" = "$NODE_MAJOR" ] || die "could not run Node.js $NODE_MAJOR from $node_home"
  npm_config_nodedir="$node_home"
  export npm_config_nodedir
fi

# --- dependencies ----------------------------------------------------------------------------
# Installed again when the lockfile or the Node ABI (isolated-vm is a native addon) changed.
stamp=node_modules/.warden-install
wanted=$(node -e '
  const { createHash } = require("node:crypto");
  const lock = createHash("sha256").update(require("node:fs").readFileSync("package-lock.json")).digest("hex");
  process.stdout.write(`${lock} abi${process.versions.modules} ${process.platform}-${process.arch}`);
')
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  say "installing dependencies with Node $(node --version) (npm ci)"
  npm ci --no-audit --no-fund >&2
  printf '%s' "$wanted" >"$stamp"
fi

# --- the command -----------------------------------------------------------------------------
command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  start)
    # The admin console (/console) is built here, again only when its sources changed.
    node services/console/scripts/build.ts
    exec node --no-node-snapshot services/connector/src/main.ts "$@"
    ;;
  test)
    # What the suite runs against besides PostgreSQL and Redis, all from Debian's packages:
    # rsyslogd with its TLS driver (syslog sink), Chromium (the sign-in pages, driven by
    # playwright-core), pytest and venv (the Python SDK), HAProxy (multi-replica and 429 tests).
    PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
    export PATH
    missing=""
    tls_driver=no
    for driver in /usr/lib/*/rsyslog/lmnsd_gtls.so /usr/lib/rsyslog/lmnsd_gtls.so; do
      [ -e "$driver" ] && tls_driver=yes
    done
    if ! command -v rsyslogd >/dev/null 2>&1 || [ "$tls_driver" = no ]; then missing="$missing rsyslog rsyslog-gnutls"; fi
    [ -x /usr/bin/chromium ] || missing="$missing chromium"
    /usr/bin/python3 -c 'import pytest, venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-pytest python3-venv"
    command -v haproxy >/dev/null 2>&1 || missing="$missing haproxy"
    if [ -n "$missing" ]; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing from Debian packages what the tests run against:$missing"
        apt-get update -qq >&2
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
      else
        die "the tests need these Debian packages; install them, then run npm test again: sudo apt-get install -y --no-install-recommends$missing"
      fi
    fi
    # PostgreSQL and Redis: vitest.global-setup.ts checks them and says what to set.
    exec node_modules/.bin/vitest run "$@"
    ;;
  run)
    [ $# -gt 0 ] || die "usage: sh scripts/bootstrap.sh run COMMAND [ARGS]"
    PATH="$root/node_modules/.bin:$PATH"
    export PATH
    exec "$@"
    ;;
  *)
    die "usage: sh scripts/bootstrap.sh start | test [VITEST ARGS] | run COMMAND [ARGS]"
    ;;
esac
