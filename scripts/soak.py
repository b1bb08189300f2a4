#!/usr/bin/env python3
"""`make soak` (#14 item 8; not part of `make test`): a long run of mixed registrations against one `dps serve`
(release build), then an overload, with the server's resident memory sampled throughout.

Devices poll as the SDKs do (`dps bench --poll retry-after`, the service's `retry-after` of 2 s): a registration
takes seconds and the service sees one register and about one poll per device. (Polling again at once, as the
throughput benchmarks do, turns a thousand waiting devices into a poll storm no real fleet makes — the first run
did that and measured the storm.)

1. **Maximum of the mix**, sustained: two closed loops at once — HTTPS keep-alive with 6,000 devices in flight
   (connections spread over `SOURCE_ADDRESSES`, default 32, loopback source addresses, as devices come from many:
   from one address the per-address connection cap, 1,000, would answer first) and MQTT (a new TLS connection per
   device) with 700 — first `FILL_SECONDS` (default 60) not counted, which also grows the database past its
   empty-table speed, then `MAX_SECONDS` (default 60) measured → H + Q = M registrations/s. The soak's mix is the
   one measured.
2. **Soak**: `SOAK_MINUTES` (default 10) of open-loop arrivals at 80 % of each: 0.8 H over HTTPS keep-alive and
   0.8 Q over MQTT. Must end with zero errors.
3. **Overload, twice**: `OVERLOAD_MINUTES` (default 2) with HTTPS arrivals at 3 × M (MQTT stays at its soak rate:
   new TLS connections at 3 × M would measure the handshake, not the service), `COOL_SECONDS` (default 30) of
   quiet after each. Only 429 (429001, the in-flight limit) is an acceptable error. The generator keeps at most
   15,000 devices in flight itself (with 32 source addresses no address reaches the per-address cap).
4. **Memory**: the server's RSS every second (and its registrations in flight and open connections, `/metrics`:
   `in-flight.csv`). Flat: over the soak after its first minute, RSS is fitted as a + c·t + b·connections (least
   squares) and the trend c, over the soak's length, must stay within 10 % of the soak's mean RSS. The number of
   open connections is in the fit because it is not constant: the generator's keep-alive pools open connections
   when a latency spike meets them and keep them, and each costs ~50 KiB (TLS and HTTP buffers) — the first
   full run's RSS rose 130 MiB as its connections went from 900 to 2,800 while RSS per connection stayed put.
   Memory per connection is bounded by the connection caps, which the overload checks. One minute against another
   was a noisy test too (jemalloc returns pages in waves; samples swing ±10 %). Bounded under overload: the second
   overload's peak is within 10 % of the first's (a leak would grow it by what the first one leaked), and after
   the cool-downs RSS is below the first overload's peak.

Results: `test-artifacts/soak/` (bench JSON, rss.csv, summary.md — the table RELIABILITY.md quotes). Exit status 1
when a check fails. The load generator runs on the same machine (as in BENCHMARKS.md): M is measured the same way.
"""
import json
import os
import ssl
import urllib.request
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/dps-target"))
DPS = TARGET / "release" / "dps"
OUT = ROOT / "test-artifacts" / "soak"
FILL_SECONDS = int(os.environ.get("FILL_SECONDS", "60"))
MAX_SECONDS = int(os.environ.get("MAX_SECONDS", "60"))
SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
OVERLOAD_MINUTES = float(os.environ.get("OVERLOAD_MINUTES", "2"))
COOL_SECONDS = int(os.environ.get("COOL_SECONDS", "30"))
SOURCE_ADDRESSES = int(os.environ.get("SOURCE_ADDRESSES", "32"))
ALLOWED_OVERLOAD_ERRORS = {"error 429001"}  # as `dps bench` classifies them


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def metrics_reader(data):
    """A function that reads, from the service's `/metrics`, its registrations in flight and its open connections
    (all listeners) as a pair (None when it cannot)."""
    info = json.loads((data / "endpoint.json").read_text())
    ctx = ssl.create_default_context(cafile=info["caCertificate"])
    ctx.check_hostname = False
    url = f"https://127.0.0.1:{info['ports']['https']}/metrics"

    def read():
        in_flight, connections = None, 0
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("dps_registrations_in_flight "):
                        in_flight = int(line.split()[1])
                    elif line.startswith("dps_connections_open{"):
                        connections += int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None if in_flight is None else (in_flight, connections)
    return read


class Sampler(threading.Thread):
    """Samples the server's RSS and its registrations in flight every second, labelled with the phase running."""

    def __init__(self, pid, in_flight):
        super().__init__(daemon=True)
        self.pid, self.phase, self.samples, self.stop = pid, "start", [], threading.Event()
        self.in_flight_reader, self.in_flight = in_flight, []
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            t = round(time.monotonic() - self.t0, 1)
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((t, self.phase, kib))
            read = self.in_flight_reader()
            if read is not None:
                self.in_flight.append((t, self.phase, *read))
            self.stop.wait(1)

    def in_flight_peak(self, phase):
        return max((n for _, p, n, _ in self.in_flight if p == phase), default=None)

    def connections_peak(self, phase):
        return max((c for _, p, _, c in self.in_flight if p == phase), default=None)

    def peak(self, phase):
        return max((k for _, p, k in self.samples if p == phase), default=None)

    def trend(self, phase, since):
        """RSS over `phase` from `since` seconds into it: the least-squares slope against time (KiB/s), the slope
        against time at a given number of open connections with the KiB each connection adds (RSS = a + c·t +
        b·connections), and the mean RSS."""
        t_start = min((t for t, p, _ in self.samples if p == phase), default=0)
        conns = {t: c for t, p, _, c in self.in_flight if p == phase}
        pts = [(t, k, conns[t]) for t, p, k in self.samples if p == phase and t - t_start >= since and t in conns]
        if len(pts) < 3:
            return None, None, None, None
        n = len(pts)
        mt, mk, mc = (sum(x[i] for x in pts) / n for i in range(3))
        s = lambda i, j: sum((x[i] - (mt, mk, mc)[i]) * (x[j] - (mt, mk, mc)[j]) for x in pts)
        stt, scc, stc, stk, sck = s(0, 0), s(2, 2), s(0, 2), s(0, 1), s(2, 1)
        det = stt * scc - stc * stc
        plain = stk / stt if stt else None
        if not det:
            return plain, None, None, mk
        return plain, (stk * scc - sck * stc) / det, (sck * stt - stk * stc) / det, mk

    def mean(self, phase):
        vals = [k for _, p, k in self.samples if p == phase]
        return sum(vals) / len(vals) if vals else None


def start_serve(data):
    log = open(OUT / "serve.log", "w")
    proc = subprocess.Popen(
        [str(DPS), "serve", "--data-dir", str(data), "--log", "warn", "--https-port", "0", "--mqtt-port", "0",
         "--amqp-port", "0", "--console-port", "0"],
        stdout=log, stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items() if k not in ("DPS_DATA_DIR", "DPS_CONFIG")})
    for _ in range(1200):
        if (data / "endpoint.json").exists():
            return proc
        if proc.poll() is not None:
            sys.exit(f"dps serve exited with {proc.returncode}; see {OUT / 'serve.log'}")
        time.sleep(0.05)
    proc.kill()
    sys.exit("dps serve wrote no endpoint.json")


def bench(data, pid, name, *args):
    """Starts `dps bench` against the running service; returns the process (its JSON goes to OUT/name.json)."""
    cmd = [str(DPS), "bench", "--data-dir", str(data), "--server-pid", str(pid), "--no-ceiling", "--output", "json",
           "--poll", "retry-after", "--json", str(OUT / f"{name}.json"), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(OUT / f"{name}.log", "w"))


def finish(proc, name):
    proc.wait()
    path = OUT / f"{name}.json"
    if proc.returncode not in (0, 1) or not path.exists():
        sys.exit(f"dps bench {name} failed ({proc.returncode}); see {OUT / (name + '.log')}")
    return json.loads(path.read_text())["service"]


def open_loop(data, pid, name, transport, rate, seconds, *args):
    return bench(data, pid, name, "--transport", transport, "--rate", f"{rate:.1f}", "--duration", str(int(seconds)), *args)


def closed_loop(data, pid, name, transport, concurrency, seconds, *args):
    return bench(data, pid, name, "--transport", transport, "--concurrency", str(concurrency), "--duration", str(seconds), *args)


def closed_loops(data, pid, name, seconds):
    """The mix's two closed loops at once for `seconds`; their results (HTTPS, MQTT)."""
    loops = [closed_loop(data, pid, f"{name}-https", "https-keep-alive", 6000, seconds, *SOURCES),
             closed_loop(data, pid, f"{name}-mqtt", "mqtt", 700, seconds)]
    return [finish(loops[0], f"{name}-https"), finish(loops[1], f"{name}-mqtt")]


SOURCES = ("--source-addresses", str(SOURCE_ADDRESSES))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    if not DPS.exists():
        sys.exit(f"{DPS} is missing: cargo build --release -p dps-cli")
    with tempfile.TemporaryDirectory(prefix="dps-soak-") as tmp:
        data = Path(tmp) / "data"
        serve = start_serve(data)
        sampler = Sampler(serve.pid, metrics_reader(data))
        sampler.start()
        try:
            return run(data, serve, sampler)
        finally:
            sampler.stop.set()
            write_rss(sampler)
            serve.terminate()
            serve.wait(timeout=30)


def run(data, serve, sampler):
    sampler.phase = "fill"
    closed_loops(data, serve.pid, "fill", FILL_SECONDS)
    sampler.phase = "maximum"
    top = closed_loops(data, serve.pid, "maximum", MAX_SECONDS)
    h, q = (t["registrationsPerSecond"] for t in top)
    m = h + q
    print(f"maximum of the mix: {m:.0f} registrations/s ({h:.0f} HTTPS keep-alive + {q:.0f} MQTT, closed loops)", flush=True)

    sampler.phase = "soak"
    secs = SOAK_MINUTES * 60
    soak = [open_loop(data, serve.pid, "soak-https", "https-keep-alive", 0.8 * h, secs, *SOURCES),
            open_loop(data, serve.pid, "soak-mqtt", "mqtt", 0.8 * q, secs)]
    soak = [finish(soak[0], "soak-https"), finish(soak[1], "soak-mqtt")]

    overloads = []
    for n in (1, 2):
        sampler.phase = f"overload{n}"
        secs = OVERLOAD_MINUTES * 60
        over = [open_loop(data, serve.pid, f"overload{n}-https", "https-keep-alive", 3 * m, secs, *SOURCES, "--max-in-flight", "15000"),
                open_loop(data, serve.pid, f"overload{n}-mqtt", "mqtt", 0.8 * q, secs)]
        overloads.append([finish(over[0], f"overload{n}-https"), finish(over[1], f"overload{n}-mqtt")])
        sampler.phase = f"cool{n}"
        time.sleep(COOL_SECONDS)
    sampler.phase = "end"
    time.sleep(6)
    if serve.poll() is not None:
        sys.exit(f"dps serve died (exit {serve.returncode}); see {OUT / 'serve.log'}")
    return report((m, h, q), top, soak, overloads, sampler)


def write_rss(sampler):
    with open(OUT / "rss.csv", "w") as f:
        f.write("seconds,phase,rss_kib\n")
        f.writelines(f"{t},{p},{k}\n" for t, p, k in sampler.samples)
    with open(OUT / "in-flight.csv", "w") as f:
        f.write("seconds,phase,registrations_in_flight,connections_open\n")
        f.writelines(f"{t},{p},{n},{c}\n" for t, p, n, c in sampler.in_flight)


def report(maximum, top, soak, overloads, sampler):
    m, h, q = maximum
    slope, adjusted, per_connection, soak_mean = sampler.trend("soak", since=60)
    length = SOAK_MINUTES * 60
    growth = None if adjusted is None else adjusted * length
    served = sum(ph["registrationsPerSecond"] for ph in soak)
    peaks = [sampler.peak(f"overload{n}") for n in (1, 2)]
    end = sampler.mean("end")
    soak_errors = {k: v for ph in soak for k, v in ph["errors"].items()}
    over_errors = {}
    for ph in (p for pair in overloads for p in pair):
        for k, v in ph["errors"].items():
            over_errors[k] = over_errors.get(k, 0) + v
    checks = [
        ("no error during the soak", not soak_errors),
        ("only 429 during the overloads", set(over_errors) <= ALLOWED_OVERLOAD_ERRORS),
        ("RSS flat over the soak (its trend after the first minute at a given number of open connections, over the "
         "soak's length, within 10 % of its mean)",
         growth is not None and growth <= soak_mean * 0.10),
        ("RSS bounded under overload (second peak within 10 % of the first; after the cool-downs below the first peak)",
         None not in peaks and end is not None and peaks[1] <= peaks[0] * 1.10 and end <= peaks[0]),
    ]
    rows = [(f"maximum of the mix (closed loops: HTTPS 6,000 + MQTT 700 devices in flight; {MAX_SECONDS} s after {FILL_SECONDS} s of fill)", f"{m:.0f}/s = {h:.0f} HTTPS + {q:.0f} MQTT")]
    phases = [("maximum HTTPS", top[0]), ("maximum MQTT", top[1]), ("soak HTTPS", soak[0]), ("soak MQTT", soak[1])]
    for n, pair in enumerate(overloads, 1):
        phases += [(f"overload {n} HTTPS", pair[0]), (f"overload {n} MQTT", pair[1])]
    for label, ph in phases:
        rows.append((label, f"{ph['registrations']} ok, {ph['failed']} failed {dict(ph['errors']) or ''} at "
                            f"{ph['registrationsPerSecond']:.0f}/s, p50 {ph.get('p50Ms', 0):.0f} / p99 {ph.get('p99Ms', 0):.0f} ms"))
    mib = lambda k: "—" if k is None else f"{k / 1024:.0f} MiB"
    named = ("maximum", "soak", "overload1", "overload2")
    rows.append(("registrations in flight, peak: maximum / soak / overload 1 / overload 2 (limit 4,096)",
                 " / ".join(str(sampler.in_flight_peak(p)) for p in named)))
    rows.append(("connections open, peak: maximum / soak / overload 1 / overload 2",
                 " / ".join(str(sampler.connections_peak(p)) for p in named)))
    per_registration = lambda v: "—" if v is None or not served else f"{v * 1024 / served:.0f} B per registration"
    mib_delta = lambda v: "—" if v is None else f"{v * length / 1024:+.1f} MiB"
    rows.append(("RSS over the soak: mean", mib(soak_mean)))
    rows.append(("RSS trend over the soak's length after minute 1: as sampled / at a given number of open connections",
                 f"{mib_delta(slope)} ({per_registration(slope)}) / {mib_delta(adjusted)} ({per_registration(adjusted)})"))
    rows.append(("RSS per open connection (fitted over the soak)", "—" if per_connection is None else f"{per_connection:.0f} KiB"))
    rows.append(("RSS peak overload 1 / overload 2 / after the cool-downs", f"{mib(peaks[0])} / {mib(peaks[1])} / {mib(end)}"))
    lines = ["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", *(f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in checks)]
    text = "\n".join(lines) + "\n"
    (OUT / "summary.md").write_text(text)
    print(text)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
