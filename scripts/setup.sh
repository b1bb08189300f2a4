#!/usr/bin/env bash
# Installs what `make run` / `make test` need and is missing; quick and silent when all is there.
#   scripts/setup.sh run    build tools for the service
#   scripts/setup.sh test   + Node.js, the pinned SDK test peers (tests/node), Playwright (tests/e2e), Python SDK
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-run}"

say() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_missing=()
need_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$1"); }

# Rust: rustup's toolchain is expected (Debian's rustc is too old for sqlx 0.9, which needs 1.94).
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust 1.94 or newer (https://rustup.rs), then run this again."
  exit 1
fi
rust_minor=$(rustc --version | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -lt 94 ]; then
  say "rustc $(rustc --version) is too old: 1.94 or newer is needed (rustup update stable)."
  exit 1
fi

if command -v dpkg-query >/dev/null 2>&1; then
  need_pkg build-essential
  need_pkg pkg-config
  need_pkg libtss2-dev        # the dps binary links the TPM software stack (`dps tpm`, TPM devices)
  if [ "$what" = "test" ]; then
    command -v node >/dev/null 2>&1 || { need_pkg nodejs; need_pkg npm; }
    command -v python3 >/dev/null 2>&1 || need_pkg python3
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkg python3-venv
    need_pkg mosquitto        # the hub connector suite drives a real broker (dynamic-security plugin)
    need_pkg openssl          # certificates made with openssl cross-check `dps cert`
    need_pkg swtpm            # TPM attestation tests run against a private software TPM each
    need_pkg swtpm-tools
    need_pkg tpm2-tools       # tpm2-tools cross-checks the device's TPM keys
    # The store suite and the service's PostgreSQL tests start throw-away clusters with the server's initdb and
    # pg_ctl from /usr/lib/postgresql/<version>/bin (any version: dps_store::testing takes the newest there).
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
      need_pkg postgresql       # Debian's server package (postgresql-<version>); its system cluster is not used
    fi
    # The cluster tests put two `dps serve` instances behind a HAProxy they start themselves (own config, loopback,
    # free ports); the Debian service is not used.
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_pkg haproxy
    # The master key in the OS keyring is tested against a GNOME Keyring (Secret Service) on a private D-Bus
    # session (scripts/with-keyring.sh); secret-tool (libsecret) reads the entries back independently.
    need_pkg libdbus-1-dev    # dps-service's `keyring` feature (built by the keyring test) links libdbus
    need_pkg gnome-keyring
    need_pkg dbus-daemon
    need_pkg libsecret-tools
  fi
  if [ ${#apt_missing[@]} -gt 0 ]; then
    say "installing ${apt_missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  fi
fi

if [ "$what" = "test" ]; then
  node_major=$(node --version | sed -E 's/^v([0-9]+).*/\1/')
  if [ "${node_major:-0}" -lt 18 ]; then
    say "Node.js $(node --version) is too old for the SDK test peers: 18 or newer is needed."
    exit 1
  fi
  # The pinned Python SDK peer in its own venv: rebuilt only when requirements.txt changed.
  venv=tests/python/.venv
  if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ] || [ tests/python/requirements.txt -nt "$venv/.installed" ]; then
    say "installing the Azure IoT Python SDK test peer (tests/python/.venv)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
    touch "$venv/.installed"
  fi
  # The pinned Node packages (SDK peers; Playwright for the console): reinstall only when a lock file changed
  # since the last install.
  for dir in tests/node tests/e2e; do
    if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
      say "installing the pinned Node packages of $dir"
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
fi
