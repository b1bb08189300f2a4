"""Raw bulk requests (BENCHMARKS.md, bulk import): POST /enrollments {"mode":..., "enrollments":[...]} over kept-alive TLS,
PARALLEL threads, against the service whose endpoint.json is in DATA_DIR.
usage: bulk-raw.py DATA_DIR FILE.ndjson BATCH PARALLEL [mode]"""
import sys, json, time, hmac, hashlib, base64, ssl, http.client, threading, queue
data_dir, path, batch, parallel = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else "create"
info = json.load(open(f"{data_dir}/endpoint.json"))
cs = dict(p.split("=", 1) for p in info["serviceConnectionString"].split(";") if p)
host = cs["HostName"]
enc = lambda s: "".join(c if c.isalnum() else "%%%02X" % ord(c) for c in s)
se = int(time.time()) + 36000
sr = enc(host)
sig = base64.b64encode(hmac.new(base64.b64decode(cs["SharedAccessKey"]), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
auth = f"SharedAccessSignature sr={sr}&sig={enc(sig)}&se={se}&skn={cs['SharedAccessKeyName']}"
t0 = time.time()
lines = [l for l in open(path, "rb").read().split(b"\n") if l.strip()]
bodies = queue.Queue()
for i in range(0, len(lines), batch):
    bodies.put(b'{"mode":"%s","enrollments":[' % mode.encode() + b",".join(lines[i:i + batch]) + b"]}")
prep = time.time() - t0
ctx = ssl.create_default_context(cafile=info["caCertificate"])
hostname, port = host.rsplit(":", 1)
errors = []
lock = threading.Lock()
def worker():
    conn = http.client.HTTPSConnection(hostname, int(port), context=ctx, timeout=300)
    while True:
        try:
            b = bodies.get_nowait()
        except queue.Empty:
            return
        conn.request("POST", "/enrollments?api-version=2021-10-01", body=b, headers={"authorization": auth, "content-type": "application/json"})
        r = conn.getresponse()
        out = json.loads(r.read())
        if r.status != 200:
            raise SystemExit(f"HTTP {r.status}: {out}")
        with lock:
            errors.extend(out["errors"])
t1 = time.time()
ts = [threading.Thread(target=worker) for _ in range(parallel)]
[t.start() for t in ts]
[t.join() for t in ts]
secs = time.time() - t1
n = len(lines)
print(json.dumps({"items": n, "failed": len(errors), "batch": batch, "parallel": parallel, "prepareSeconds": round(prep, 2),
                  "sendSeconds": round(secs, 2), "perSecond": round((n - len(errors)) / secs)}))
