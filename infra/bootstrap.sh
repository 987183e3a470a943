#!/usr/bin/env bash
# Installs what Slipstream needs on this machine, and nothing twice. Safe to repeat.
#   - a Python >= 3.11 virtualenv in .venv with the locked dependencies (uv)
#   - without a Docker engine: Java 17+, Maven and redis-server from the OS packages (apt), when missing
# Kafka's jars are resolved from Maven Central by `slipstream infra up` into ~/.cache/slipstream (cached).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SLIPSTREAM_VENV:-.venv}
say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"; else return 1; fi
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Python ------------------------------------------------------------------------------------------------
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[ -n "$PY" ] || die "Python >= 3.11 is required (e.g. apt-get install python3.11 python3.11-venv)"

if ! command -v uv >/dev/null; then
  say "installing uv (fast Python package installer) from PyPI"
  "$PY" -m pip install --quiet --user uv 2>/dev/null || "$PY" -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
UV="uv"; command -v uv >/dev/null || UV="$PY -m uv"

STAMP="$VENV/.slipstream-installed"
WANT=$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  $UV venv --quiet --python "$PY" "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing Python dependencies (locked in requirements.lock)"
  $UV pip install --quiet --python "$VENV/bin/python" -c requirements.lock -e '.[dev]'
  echo "$WANT" > "$STAMP"
else
  say "Python dependencies up to date"
fi

# --- Services: Docker, or Java + Maven + redis-server ------------------------------------------------------
if [ "${SLIPSTREAM_BACKEND:-auto}" != "local" ] && command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1 && timeout 5 docker compose version >/dev/null 2>&1; then
  say "Docker engine found: Kafka and Redis will run in containers"
  exit 0
fi

java_ok() { command -v java >/dev/null && java -version 2>&1 | awk -F'"' '/version/ {split($2,v,"."); exit !(v[1] >= 17)}'; }
if ! java_ok; then
  say "installing Java 17 (openjdk-17-jre-headless)"
  apt_install openjdk-17-jre-headless || die "Java 17+ is required: apt-get install openjdk-17-jre-headless (or brew install openjdk@17)"
fi
if ! command -v mvn >/dev/null; then
  say "installing Maven (resolves the Kafka broker jars from Maven Central)"
  apt_install maven || die "Maven is required: apt-get install maven (or brew install maven)"
fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ] && [ ! -x /usr/sbin/redis-server ]; then
  say "installing redis-server"
  apt_install redis-server || die "redis-server is required: apt-get install redis-server (or brew install redis)"
  # Debian starts a system-wide redis on 6379 after install; Slipstream runs its own, so stop that one.
  if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/redis-server ]; then
    as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
fi
say "ready: $("$VENV/bin/python" --version), $(java -version 2>&1 | head -1), $(redis-server --version | cut -d' ' -f1-3)"
