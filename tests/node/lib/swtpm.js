'use strict';
// A private software TPM (swtpm, Debian packages swtpm + swtpm-tools) per test, as the Rust suites use one
// (crates/dps-device/src/swtpm.rs): TPM commands on a free loopback port P, its control channel on P + 1 (the
// swtpm TCTI needs the pair), a fresh state directory (so a fresh endorsement seed: a new EK), initialised and
// Startup(CLEAR) done. `stop()` kills it by its PID and removes the state; every swtpm still running when the
// test process exits is killed too (by PID only).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const READY_WITHIN_MS = 10000;
const ATTEMPTS = 5;

const running = new Set();
process.on('exit', () => {
  for (const pid of running) {
    try { process.kill(pid, 'SIGKILL'); } catch (_) { /* already gone */ }
  }
});

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/** Whether `port` can be bound on 127.0.0.1 now (0: any free port; resolves the port, or 0 when taken). */
function bindable(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(0));
    s.listen(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** A port P such that P and P + 1 are both free on 127.0.0.1 now. */
async function freePortPair() {
  for (let i = 0; i < 50; i++) {
    const p = await bindable(0);
    if (p > 0 && p < 65535 && (await bindable(p + 1)) === p + 1) return p;
  }
  throw new Error('found no two consecutive free ports on 127.0.0.1');
}

function accepts(port) {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

function tail(file) {
  try { return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-20).join('\n'); } catch (_) { return ''; }
}

async function startOnce() {
  const port = await freePortPair();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swtpm-node-'));
  const log = path.join(dir, 'swtpm.log');
  const out = fs.openSync(log, 'a');
  const child = spawn('swtpm', [
    'socket', '--tpm2',
    '--server', `type=tcp,port=${port},bindaddr=127.0.0.1`,
    '--ctrl', `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
    '--tpmstate', `dir=${dir}`,
    '--flags', 'not-need-init,startup-clear',
  ], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  let spawnError;
  child.once('error', (e) => { spawnError = e; });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  if (child.pid) running.add(child.pid);

  const tpm = {
    port,
    pid: child.pid,
    dir,
    tcti: `swtpm:host=127.0.0.1,port=${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        try { process.kill(child.pid, 'SIGTERM'); } catch (_) { /* gone */ }
        const timer = setTimeout(() => { try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ } }, 5000);
        await exited;
        clearTimeout(timer);
      }
      running.delete(child.pid);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };

  const deadline = Date.now() + READY_WITHIN_MS;
  for (;;) {
    if (spawnError) {
      await tpm.stop();
      if (spawnError.code === 'ENOENT') {
        const e = new Error('swtpm is not installed: the TPM tests need a software TPM (Debian: apt-get install swtpm swtpm-tools)');
        e.missing = true;
        throw e;
      }
      throw spawnError;
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      const text = tail(log);
      await tpm.stop();
      throw new Error(`swtpm exited (code ${child.exitCode}, signal ${child.signalCode}) before listening on ${port}: ${text}`);
    }
    if ((await accepts(port + 1)) && (await accepts(port))) return tpm;
    if (Date.now() > deadline) {
      await tpm.stop();
      throw new Error(`swtpm did not listen on 127.0.0.1:${port} within ${READY_WITHIN_MS} ms`);
    }
    await sleep(20);
  }
}

/** Starts a fresh swtpm (retried when its ports were taken meanwhile). Resolves { tcti, port, pid, dir, stop() }. */
async function startSwtpm() {
  let last;
  for (let i = 0; i < ATTEMPTS; i++) {
    try {
      return await startOnce();
    } catch (e) {
      if (e.missing) throw e;
      last = e;
    }
  }
  throw new Error(`swtpm did not start in ${ATTEMPTS} attempts: ${last && last.message}`);
}

module.exports = { startSwtpm };
