'use strict';
// A cluster for the tests of issue #15 (several `dps serve` on one PostgreSQL behind HAProxy), every part started
// by the test and stopped by it (by PID): a throw-away PostgreSQL cluster on a unix socket in a temporary
// directory (initdb as the `postgres` user when root: PostgreSQL refuses root), the cluster's material made once by
// `dps init`, instances started with lib/dps.js `startService`, and a HAProxy of its own (own config file in a
// temporary directory, loopback, free ports; never the system service) in TCP mode — TLS passes through, so
// X.509 devices' client certificates reach the instances.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const dps = require('./dps');

// Debian installs it in /usr/sbin, which a user's PATH may not hold.
const HAPROXY = process.env.HAPROXY || (fs.existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');

const children = new Set();
const cleanups = [];
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
  for (const c of cleanups) {
    try { c(); } catch (_) { /* best effort */ }
  }
});

// A test run stopped by a signal still stops what it started (the handlers above run on `exit`).
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** A free loopback port (bound, then closed). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** The newest PostgreSQL server binaries (as dps_store::testing finds them). */
function pgBin() {
  if (process.env.DPS_PG_BIN) return process.env.DPS_PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb'))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('PostgreSQL server binaries are not installed (scripts/setup.sh test installs them)');
  return path.join(root, versions[0], 'bin');
}

/**
 * Starts a throw-away PostgreSQL cluster with one database `dps`; returns { url, stop() }. `fsync: false` (the
 * tests') trades durability for speed; benchmarks keep it on.
 */
function startPostgres({ fsync = false } = {}) {
  const bin = pgBin();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-cluster-pg-'));
  const root = process.getuid && process.getuid() === 0;
  if (root) execFileSync('chown', ['postgres:postgres', dir]);
  const run = (cmd, args) => execFileSync(root ? 'runuser' : cmd, root ? ['-u', 'postgres', '--', cmd, ...args] : args, { stdio: 'pipe' });
  const data = path.join(dir, 'data');
  const stop = () => {
    try { run(path.join(bin, 'pg_ctl'), ['-D', data, 'stop', '-m', 'immediate']); } catch (_) { /* not running */ }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  cleanups.push(stop);
  run(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const options = `-c listen_addresses='' -c unix_socket_directories=${dir}${fsync ? '' : ' -c fsync=off'}`;
  run(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '60', '-o', options, 'start']);
  run(path.join(bin, 'createdb'), ['-h', dir, '-U', 'postgres', 'dps']);
  return { url: `postgres://postgres@localhost/dps?host=${dir}`, stop };
}

/** `dps init`: the cluster's master key, CA and server certificate, once. */
function initMaterial() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-cluster-material-'));
  fs.rmSync(dir, { recursive: true, force: true });
  execFileSync(dps.DPS_BIN, ['init', '--data-dir', dir, '--host', '127.0.0.1'], { stdio: 'pipe' });
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    args: ['--master-key-file', path.join(dir, 'master.key'), '--ca-file', path.join(dir, 'ca.pem'),
      '--tls-cert-file', path.join(dir, 'server.pem'), '--tls-key-file', path.join(dir, 'server.key')],
  };
}

/** HAProxy's configuration: TCP pass-through for each device port, health checked over TLS at GET /health. */
function haproxyConfig(ports, instances) {
  const lines = [
    'global', '  maxconn 2000',
    'defaults', '  mode tcp', '  timeout connect 2s', '  timeout client 120s', '  timeout server 120s', '  retries 3', '  option redispatch',
  ];
  for (const [name, key] of [['https', 'https'], ['mqtt', 'mqtt'], ['amqp', 'amqp']]) {
    lines.push(`frontend ${name}`, `  bind 127.0.0.1:${ports[name]}`, `  default_backend ${name}_instances`);
    lines.push(`backend ${name}_instances`, '  balance roundrobin', '  option httpchk', '  http-check send meth GET uri /health ver HTTP/1.1 hdr Host localhost', '  http-check expect status 200');
    instances.forEach((svc, i) => {
      lines.push(`  server i${i} 127.0.0.1:${svc.endpoint.ports[key]} check port ${svc.endpoint.ports.https} check-ssl verify none inter 500ms fall 2 rise 1`);
    });
  }
  return lines.join('\n') + '\n';
}

/** Starts HAProxy in the foreground on its own config; resolves once it accepts on every frontend port. */
async function startHaproxy(instances) {
  const ports = { https: await freePort(), mqtt: await freePort(), amqp: await freePort() };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-haproxy-'));
  const cfg = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfg, haproxyConfig(ports, instances));
  execFileSync(HAPROXY, ['-c', '-q', '-f', cfg], { stdio: 'pipe' });
  const log = fs.openSync(path.join(dir, 'haproxy.log'), 'a');
  const child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  children.add(child);
  child.once('exit', () => children.delete(child));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${fs.readFileSync(path.join(dir, 'haproxy.log'), 'utf8')}`);
    const up = await new Promise((resolve) => {
      const s = net.connect(ports.https, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    await sleep(50);
  }
  return {
    ports,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        process.kill(child.pid, 'SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Two (or `n`) instances on one database behind HAProxy, started at once (`log`: their log filter; `fsync`:
 * PostgreSQL's). Returns { instances, lb, pg,
 * stop() }: `lb` looks like a lib/dps.js service (host, port, idScope, ca, endpoint) but reaches the balancer.
 */
async function startCluster({ n = 2, extraArgs = [], log = 'info,dps_service::https=debug', fsync = false } = {}) {
  const pg = startPostgres({ fsync });
  const material = initMaterial();
  const args = ['--database-url', pg.url, '--amqp-port', '0', '--log', log, ...material.args, ...extraArgs];
  // All at once on the new database: they take turns at bootstrapping it (the start lock), so they agree on the
  // ID scope, the owner policy and the admin password.
  const instances = await Promise.all(Array.from({ length: n }, () => dps.startService({ extraArgs: args })));
  const haproxy = await startHaproxy(instances);
  const first = instances[0];
  const lbConnectionString = first.endpoint.serviceConnectionString.replace(/HostName=[^;]*/, `HostName=127.0.0.1:${haproxy.ports.https}`);
  const lb = {
    host: '127.0.0.1',
    port: haproxy.ports.https,
    idScope: first.idScope,
    ca: first.ca,
    endpoint: { ...first.endpoint, ports: { https: haproxy.ports.https, mqtt: haproxy.ports.mqtt, amqp: haproxy.ports.amqp }, serviceConnectionString: lbConnectionString },
  };
  return {
    instances,
    lb,
    pg,
    stop: async () => {
      await haproxy.stop();
      for (const svc of instances) await svc.stop();
      pg.stop();
    },
  };
}

/** The device requests an instance logged (`dps_service::https=debug`), as { method, path } in order. */
function requestsServed(svc) {
  const text = fs.readFileSync(svc.logFile, 'utf8');
  const out = [];
  // The text format colours field names (ANSI escapes), even in a file.
  for (const line of text.replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
    if (!/\brequest\b/.test(line)) continue;
    const method = /method=(\w+)/.exec(line);
    const p = /path=(\S+)/.exec(line);
    if (method && p) out.push({ method: method[1], path: p[1] });
  }
  return out;
}

module.exports = { startCluster, startPostgres, requestsServed, freePort, sleep };
