#!/usr/bin/env bash
# Smoke test of the built console (ui/dist) in headless Chromium: serves ui/dist on 127.0.0.1 with a fixed
# GET /service/info (the shape of dps_proto::EndpointInfo), loads the page, and fails when the app did not render
# its sign-in form or the page logged a console message other than Chromium's integrity note. (The full console
# against a real service is tests/e2e.)
#   scripts/ui-smoke.sh [screenshot.png]        (run `make ui` first; UI_DIST=dir tests another build)
# It catches the silent failure TOOLCHAIN §8 describes: a wasm-opt that breaks the module leaves a blank page.
set -euo pipefail
cd "$(dirname "$0")/.."
shot="${1:-}"
dist="${UI_DIST:-ui/dist}"
[ -f "$dist/index.html" ] || { echo "ui-smoke: $dist is missing: run make ui" >&2; exit 1; }

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/serve.py" <<'EOF'
import functools, http.server, json, sys
INFO = {"idScope": "0ne00SMOKE1", "host": "127.0.0.1", "ports": {"https": 8443, "mqtt": 18883},
        "caCertificate": "/tmp/ca.pem", "serviceConnectionString": "HostName=127.0.0.1:8443;SharedAccessKeyName=x;SharedAccessKey=x"}
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0] != "/service/info":
            return super().do_GET()
        body = json.dumps(INFO).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
EOF
python3 "$work/serve.py" "$dist" >"$work/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(head -1 "$work/port")/"

chrome=(chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
  --disable-sync --no-first-run --disable-quic --window-size=1100,650 --virtual-time-budget=5000)
"${chrome[@]}" --user-data-dir="$work/profile" --enable-logging=stderr --v=0 --dump-dom "$url" >"$work/dom.html" 2>"$work/chrome.log"

fail=0
# Not signed in: the wasm app must have rendered its sign-in form (a broken module leaves an empty body).
for want in 'data-testid="login-password"' 'data-testid="login-submit"'; do
  grep -qF "$want" "$work/dom.html" || { echo "ui-smoke: the page lacks $want" >&2; fail=1; }
done
if grep ':CONSOLE' "$work/chrome.log" | grep -v 'crbug.com/981419' >&2; then
  echo "ui-smoke: the page logged the console messages above" >&2
  fail=1
fi
if [ -n "$shot" ]; then
  "${chrome[@]}" --user-data-dir="$work/profile2" --screenshot="$shot" "$url" 2>/dev/null
fi
[ "$fail" -eq 0 ] && echo "ui-smoke: ok ($url)"
exit "$fail"
