#!/usr/bin/env bash
# Installs what Slipstream needs on this machine, and nothing twice. Safe to repeat, from any shell.
#   - a Python >= 3.11 virtualenv in .venv with the locked dependencies and the extras in $EXTRAS, installed by uv
#   - Chromium (Debian's chromium, apt, when /usr/bin/chromium is missing): `make test` drives it headless to load the
#     dashboard page (tests/integration/monitoring/test_dashboard_browser.py)
#   - without a Docker engine: Java 17+, Maven and redis-server from the OS packages (apt), when missing
#   - as root on a system with apt and no Compose: Debian's docker-compose (deploy/compose/docker-compose.yml)
#   - as root on a system with apt and no `dockerd`: Debian's docker.io and debootstrap, quietly, once. Nothing here
#     starts dockerd: the tests that need an engine start it (slipstream.infra.docker_engine), and without a registry
#     the images are built from debootstrap + Debian packages + the cached Kafka jars (`slipstream infra images`)
# Kafka's jars are resolved from Maven Central by `slipstream infra up` into ~/.cache/slipstream (cached).
#
# Nothing here runs pip inside .venv (a venv made by uv has none): uv installs into it from outside. uv itself is
# found on PATH, in ~/.local/bin or ~/.cargo/bin (often not on PATH), or as a Python module; failing that it is
# installed once with pip into a private tools venv, $TOOLS (else the user's site-packages), and called by full path.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${SLIPSTREAM_VENV:-.venv}
EXTRAS=${SLIPSTREAM_EXTRAS:-dev,test,bench}  # pyproject.toml's extras to install; one missing is a warning of uv's
TOOLS=${SLIPSTREAM_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/slipstream/tools}  # shared by every clone
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
# The interpreter the venv is made from: a real installation, never a virtualenv. `make` puts .venv/bin first on
# PATH, so on a second run a plain `python3` would be the venv's own. Candidates run with stderr silenced: a pyenv
# shim of a version that is installed but not selected prints a page of advice and fails; it is skipped. The
# path printed is the interpreter's own (a pyenv shim resolves to the version behind it).
VENV_BIN=$(cd "$VENV/bin" 2>/dev/null && pwd -P || true)
real_python() {  # $1: a command or path; prints the interpreter's own path when it is a usable base Python
  "$1" -c 'import sys
ok = sys.version_info >= (3, 11) and sys.prefix == sys.base_prefix
print(sys.executable if ok else "")
sys.exit(not ok)' 2>/dev/null
}
in_venv_bin() { [ -n "$VENV_BIN" ] && [ "$(cd "$(dirname "$1")" 2>/dev/null && pwd -P)" = "$VENV_BIN" ]; }
find_python() {
  local name dir found IFS=:
  for name in python3.11 python3.12 python3.13 python3; do  # 3.11 first: requirements.lock is compiled for it
    for dir in $PATH; do
      [ -n "$dir" ] && [ -x "$dir/$name" ] || continue
      in_venv_bin "$dir/$name" && continue
      if found=$(real_python "$dir/$name") && [ -n "$found" ]; then
        echo "$found"
        return 0
      fi
    done
  done
  return 1
}

PY=""
need_python() {
  [ -z "$PY" ] || return 0
  if [ -n "${PYTHON:-}" ]; then
    PY=$(real_python "$PYTHON") || die "PYTHON=$PYTHON is not a Python >= 3.11 outside a virtualenv"
  else
    PY=$(find_python) || die "Python >= 3.11 is required (e.g. apt-get install python3.11 python3.11-venv)"
  fi
}

# --- uv ----------------------------------------------------------------------------------------------------
UV=""
works() { [ -n "$1" ] && [ -x "$1" ] && ! in_venv_bin "$1" && "$1" --version >/dev/null 2>&1; }
uv_of_python() { "$PY" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null; }
find_uv() {
  local candidate
  for candidate in "$(command -v uv 2>/dev/null || true)" "$HOME/.local/bin/uv" "${CARGO_HOME:-$HOME/.cargo}/bin/uv" \
    "$TOOLS/bin/uv"; do
    if works "$candidate"; then UV=$candidate; return 0; fi
  done
  need_python
  candidate=$(uv_of_python || true)
  if works "$candidate"; then UV=$candidate; return 0; fi
  return 1
}
install_uv() {
  say "installing uv (fast Python package installer) into $TOOLS"
  if "$PY" -m venv "$TOOLS" >/dev/null 2>&1 && "$TOOLS/bin/python" -m pip install --quiet uv >/dev/null 2>&1 \
    && works "$TOOLS/bin/uv"; then
    UV="$TOOLS/bin/uv"; return 0
  fi
  # no venv module (Debian: python3-venv) or no pip in it: the user's site-packages, called by full path
  if "$PY" -m pip install --quiet --user uv >/dev/null 2>&1 && UV=$(uv_of_python) && works "$UV"; then
    return 0
  fi
  # Debian's own Python refuses --user installs (PEP 668) and ships venv apart: add python3-venv, then the venv way
  pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null)
  if apt_install python3-venv "python$pyver-venv" 2>/dev/null || apt_install python3-venv 2>/dev/null; then
    rm -rf "$TOOLS"
    if "$PY" -m venv "$TOOLS" >/dev/null 2>&1 && "$TOOLS/bin/python" -m pip install --quiet uv >/dev/null 2>&1 \
      && works "$TOOLS/bin/uv"; then
      UV="$TOOLS/bin/uv"; return 0
    fi
  fi
  die "could not install uv with $PY (no venv module, no pip): apt-get install python3-venv, or install uv (pipx install uv), then run this again"
}

# --- the project's virtualenv ------------------------------------------------------------------------------
STAMP="$VENV/.slipstream-installed"
WANT=$({ cat pyproject.toml requirements.lock; echo "extras: $EXTRAS"; } | sha256sum | cut -c1-16)
venv_ok() { "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }

if venv_ok && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  say "Python dependencies up to date"
else
  find_uv || install_uv
  if ! venv_ok; then
    need_python
    if [ -e "$VENV" ]; then
      [ -f "$VENV/pyvenv.cfg" ] || die "$VENV exists and is not a virtualenv: move it away, or set SLIPSTREAM_VENV"
      rm -rf "$VENV"  # its interpreter is gone (e.g. a Python upgrade): made again
    fi
    say "creating $VENV ($("$PY" --version 2>&1))"
    "$UV" venv --quiet --python "$PY" "$VENV"
  fi
  say "installing Python dependencies (locked in requirements.lock; extras $EXTRAS)"
  "$UV" pip install --quiet --python "$VENV/bin/python" -c requirements.lock -e ".[$EXTRAS]"
  echo "$WANT" > "$STAMP"
fi

# --- Chromium: the headless browser of the dashboard's test ------------------------------------------------
# Before the services: the test needs it whether Kafka runs in Docker or not. Without apt or root it is a warning, not
# a failure (the demo does not need it); that test then fails naming the missing browser.
if [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium (headless browser for the dashboard's test)"
  apt_install chromium || printf '\033[1;33mwarning:\033[0m %s\n' \
    "could not install Chromium (apt-get install chromium, as root): the dashboard's browser test will fail" >&2
fi

# --- Docker engine packages (installed, never started here) ------------------------------------------------
# The throwaway platforms (slipstream.infra.throwaway) and their tests run containers; the main suite does not.
has_dockerd() { command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ]; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! has_dockerd; then
  say "installing Docker's engine and debootstrap (docker.io, debootstrap; not started)"
  apt_install docker.io debootstrap debian-archive-keyring || printf '\033[1;33mwarning:\033[0m %s\n' \
    "could not install docker.io (apt-get install docker.io debootstrap): the throwaway-platform tests will fail" >&2
fi

# --- Compose (installed, never run here) --------------------------------------------------------------------
# The compose stack's test (tests/integration/infra/test_compose_stack.py) runs deploy/compose/docker-compose.yml.
# Debian bookworm has no Compose v2 plugin: its docker-compose (v1.29) reads the same file.
has_compose() { timeout 10 docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && has_dockerd && ! has_compose; then
  say "installing Docker Compose (docker-compose; the compose stack's test; not started)"
  apt_install docker-compose || printf '\033[1;33mwarning:\033[0m %s\n' \
    "could not install docker-compose (apt-get install docker-compose): the compose stack's test will install it" >&2
fi

# --- Services: Docker, or Java + Maven + redis-server ------------------------------------------------------
# With Docker and Compose, `infra up` runs Kafka and Redis in containers; the test suite still uses the local
# launcher unless SLIPSTREAM_TEST_BACKEND=testcontainers, so its prerequisites are still installed (a warning if not).
LOCAL_REQUIRED=1
if [ "${SLIPSTREAM_BACKEND:-auto}" != "local" ] && command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1 && timeout 5 docker compose version >/dev/null 2>&1; then
  say "Docker engine found: \`slipstream infra up\` will run Kafka and Redis in containers"
  [ "${SLIPSTREAM_TEST_BACKEND:-}" = testcontainers ] && exit 0
  LOCAL_REQUIRED=0
fi
missing() {
  if [ "$LOCAL_REQUIRED" = 1 ]; then die "$1"; fi
  printf '\033[1;33mwarning:\033[0m %s (the tests need it unless SLIPSTREAM_TEST_BACKEND=testcontainers)\n' "$1" >&2
}

java_ok() { command -v java >/dev/null && java -version 2>&1 | awk -F'"' '/version/ {split($2,v,"."); exit !(v[1] >= 17)}'; }
if ! java_ok; then
  say "installing Java 17 (openjdk-17-jre-headless)"
  apt_install openjdk-17-jre-headless || missing "Java 17+ is required: apt-get install openjdk-17-jre-headless (or brew install openjdk@17)"
fi
if ! command -v mvn >/dev/null; then
  say "installing Maven (resolves the Kafka broker jars from Maven Central)"
  apt_install maven || missing "Maven is required: apt-get install maven (or brew install maven)"
fi
if ! command -v redis-server >/dev/null && [ ! -x /usr/bin/redis-server ] && [ ! -x /usr/sbin/redis-server ]; then
  say "installing redis-server"
  apt_install redis-server || missing "redis-server is required: apt-get install redis-server (or brew install redis)"
  # Debian starts a system-wide redis on 6379 after install; Slipstream runs its own, so stop that one.
  if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/redis-server ]; then
    as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
  fi
fi
REDIS=$(command -v redis-server || ls /usr/bin/redis-server /usr/sbin/redis-server 2>/dev/null | head -1 || true)
if java_ok && [ -n "$REDIS" ]; then
  say "ready: $("$VENV/bin/python" --version), $(java -version 2>&1 | head -1), $("$REDIS" --version | cut -d' ' -f1-3)"
fi
