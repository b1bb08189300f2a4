#!/bin/sh
# Runs a command with an OS keyring of its own: a private D-Bus session bus (dbus-run-session) with a GNOME
# Keyring daemon (Secret Service) whose keyrings live in a throw-away directory, unlocked with a throw-away
# password. Both end with the command; nothing of the user's session or keyring is touched.
#   scripts/with-keyring.sh cargo test -p dps-service --features keyring --test keyring
set -eu
if [ -z "${DPS_KEYRING_SESSION:-}" ]; then
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    mkdir -m 700 "$dir/run"
    DPS_KEYRING_SESSION=1 XDG_DATA_HOME="$dir/data" XDG_RUNTIME_DIR="$dir/run" \
        dbus-run-session -- "$0" "$@"
    exit $?
fi
printf 'throw-away' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
exec "$@"
