#!/usr/bin/env node
'use strict';
// `make bench-pg` (#15): `dps bench` against PostgreSQL — one instance, and two instances behind HAProxy — beside
// the SQLite default, each with the bare ceiling `dps bench` measures in the same run (BENCHMARKS.md, "PostgreSQL").
// Everything is started here and stopped by PID (tests/node/lib/cluster.js: a throw-away PostgreSQL cluster with
// fsync on, `dps init` material, HAProxy in TCP mode). Release binary: $CARGO_TARGET_DIR/release/dps.
// Settings (environment): SECONDS_EACH (default 30), CONCURRENCY (default 64), TRANSPORT (default https-keep-alive).
// Results: test-artifacts/bench-pg/<name>.json and summary.md.

const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { execFileSync } = require('node:child_process');

const target = process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'dps-target');
process.env.DPS_BIN = process.env.DPS_BIN || path.join(target, 'release', 'dps');
const { startCluster } = require('../tests/node/lib/cluster');

const OUT = path.join(__dirname, '..', 'test-artifacts', 'bench-pg');
const SECONDS = process.env.SECONDS_EACH || '30';
const CONCURRENCY = process.env.CONCURRENCY || '64';
const TRANSPORT = process.env.TRANSPORT || 'https-keep-alive';

/** Runs `dps bench` (closed loop) with `extra` arguments; returns its JSON summary. */
function bench(name, extra) {
  const json = path.join(OUT, `${name}.json`);
  execFileSync(process.env.DPS_BIN, ['bench', '--transport', TRANSPORT, '--concurrency', CONCURRENCY, '--duration', SECONDS,
    '--output', 'json', '--json', json, ...extra], { stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 64 << 20 });
  return JSON.parse(fs.readFileSync(json, 'utf8'));
}

/** `dps bench --target` arguments for a cluster's entry point (`svc`: an instance or the balancer). */
function targetArgs(svc) {
  const caFile = path.join(OUT, 'ca.pem');
  fs.writeFileSync(caFile, svc.ca);
  return ['--target', `127.0.0.1:${svc.endpoint.ports.https}`, '--id-scope', svc.idScope,
    '--connection-string', svc.endpoint.serviceConnectionString, '--ca-file', caFile, '--mqtt-port', String(svc.endpoint.ports.mqtt)];
}

async function onCluster(n, name) {
  const cluster = await startCluster({ n, log: 'warn', fsync: true });
  try {
    const entry = n === 1 ? cluster.instances[0] : cluster.lb;
    return bench(name, targetArgs(entry));
  } finally {
    await cluster.stop();
  }
}

function row(label, r) {
  const s = r.service;
  const ceiling = r.ceiling ? `${Math.round(r.ceiling.registrationsPerSecond)}/s` : '—';
  const ratio = r.ratio ? r.ratio.toFixed(2) : '—';
  return `| ${label} | ${Math.round(s.registrationsPerSecond)}/s | ${s.failed} | ${Math.round(s.p50Ms)} / ${Math.round(s.p99Ms)} ms | ${ceiling} | ${ratio} |`;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const results = [
    ['SQLite, one instance', bench('sqlite-1', [])],
    ['PostgreSQL, one instance', await onCluster(1, 'postgres-1')],
    ['PostgreSQL, two instances behind HAProxy', await onCluster(2, 'postgres-2')],
  ];
  const lines = [
    `${TRANSPORT}, closed loop, ${CONCURRENCY} devices in flight, ${SECONDS} s each; ceiling: the bare server \`dps bench\` runs in the same run`,
    '',
    '| service | registrations | failed | p50 / p99 | ceiling | ratio |',
    '|---|---|---|---|---|---|',
    ...results.map(([label, r]) => row(label, r)),
  ];
  fs.writeFileSync(path.join(OUT, 'summary.md'), lines.join('\n') + '\n');
  console.log(lines.join('\n'));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
