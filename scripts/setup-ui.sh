#!/usr/bin/env bash
# Installs what the console (ui/, Leptos → wasm with trunk) and the desktop shell (src-tauri/, Tauri 2) need
# and is missing; quick and silent when all is there. Recipes: ../shared/TOOLCHAIN.md §1.
#   scripts/setup-ui.sh            apt packages, wasm-bindgen-cli, trunk, tauri-driver
#   SETUP_UI_TAURI_CLI=1 scripts/setup-ui.sh   + tauri-cli (bundling a .deb, `cargo tauri dev`; ~8 min)
# Every step prints how long it took when it had something to do.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1msetup-ui:\033[0m %s\n' "$*"; }
step_start=0
begin() { step_start=$SECONDS; say "$*"; }
done_step() { say "$1 took $((SECONDS - step_start)) s"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# 1. Debian packages.
#    rustc-web + rust-web-src: a rustc (1.96, /usr/bin/rustc) with std sources, so build-std can make a wasm32 std
#    (rustup cannot download the wasm32 target here); lld-19: wasm-ld; binaryen: wasm-opt (used by trunk).
#    webkit/gtk -dev: the Tauri shell; xvfb, xauth, x11-apps, imagemagick: a window + screenshot without a display;
#    libdbus-1-dev: the master key in the OS keyring (Secret Service); webkit2gtk-driver: WebKitWebDriver for tauri-driver; chromium: headless smoke test of ui/dist.
apt_pkgs=(
  rustc-web rust-web-src lld-19 binaryen
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
  libsoup-3.0-dev libjavascriptcoregtk-4.1-dev libxdo-dev build-essential pkg-config libssl-dev libdbus-1-dev
  xvfb xauth x11-apps imagemagick webkit2gtk-driver chromium
)
apt_missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$p")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
  begin "installing ${apt_missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
  done_step "apt"
fi

# 2. A nightly cargo front-end: ui/rust-toolchain.toml selects it so cargo reads [unstable] build-std, and trunk
#    needs rustc >= 1.96.1 to build. It cannot be downloaded here; the machine image carries it.
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  say "no rustup nightly toolchain: ui/ needs one (rustup toolchain install nightly --profile minimal)."
  exit 1
fi

# 3. wasm-bindgen-cli, exactly the wasm-bindgen version ui/Cargo.lock pins (trunk refuses a mismatch).
#    Not --locked: its lock file wants a webpki-roots the registry does not have.
wb_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' ui/Cargo.lock 2>/dev/null || true)
wb_version=${wb_version:-0.2.130}
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  begin "installing wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version" --force --quiet
  done_step "wasm-bindgen-cli"
fi

# 4. trunk (builds ui/ → ui/dist, runs wasm-bindgen and wasm-opt).
if ! command -v trunk >/dev/null 2>&1; then
  begin "installing trunk (about 9 minutes)"
  cargo +nightly install trunk --locked --quiet
  done_step "trunk"
fi

# 5. tauri-driver (WebDriver for the desktop shell's end-to-end tests).
if ! command -v tauri-driver >/dev/null 2>&1; then
  begin "installing tauri-driver"
  cargo install tauri-driver --locked --quiet
  done_step "tauri-driver"
fi

# 6. Optional: the Tauri CLI.
if [ "${SETUP_UI_TAURI_CLI:-0}" = "1" ] && ! cargo tauri --version >/dev/null 2>&1; then
  begin "installing tauri-cli (about 8 minutes)"
  cargo install tauri-cli --version "^2" --locked --quiet
  done_step "tauri-cli"
fi
