'use strict';
// A TPM security client for the official Node provisioning SDK: the interface `TpmRegistration`
// (azure-iot-provisioning-device 1.9.1, dist/tpm_registration.js) calls, as azure-iot-security-tpm's
// `TpmSecurityClient` implements it — each method takes a Node callback, or returns a promise without one:
//   getEndorsementKey(cb(err, Buffer))    the EK's TPM2B_PUBLIC (the transports send it base64 / raw, §4.4.1)
//   getStorageRootKey(cb(err, Buffer))    the SRK's TPM2B_PUBLIC
//   getRegistrationId(cb(err, string))    the id derived from the EK (§4.4.2), unless one is given
//   activateIdentityKey(Buffer, cb(err))  import the blob's HMAC key (§4.4.3; called for K1, then for K2)
//   signWithIdentity(Buffer, cb(err, Buffer))  HMAC-SHA256 with the imported key, in the TPM
// backed by a real TPM (a private swtpm, lib/swtpm.js) through the dps CLI: `dps tpm show|activate|sign
// --tcti T` (the binary at $DPS_BIN). azure-iot-security-tpm itself is not installed.

const { execFile } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const DPS_BIN = process.env.DPS_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache', 'dps-target'), 'debug', 'dps');

/** Runs `fn` (async) and reports to `callback(err, result)` when given, else returns its promise. */
function callbackOrPromise(fn, callback) {
  const p = fn();
  if (typeof callback !== 'function') return p;
  p.then((r) => callback(null, r), (e) => callback(e));
  return undefined;
}

class DpsTpmSecurityClient {
  /**
   * @param {{ tcti: string, registrationId?: string, dpsBin?: string }} opts `tcti`: the TPM
   *   (`swtpm:host=127.0.0.1,port=P`); `registrationId` overrides the one derived from the EK.
   */
  constructor({ tcti, registrationId, dpsBin } = {}) {
    if (!tcti) throw new ReferenceError('tcti is required');
    this.tcti = tcti;
    this._registrationId = registrationId;
    this._bin = dpsBin || DPS_BIN;
    this._shown = undefined;
    /** Every blob activated, base64, in order (the test checks K1 then K2). */
    this.activations = [];
  }

  _dps(args) {
    return new Promise((resolve, reject) => {
      execFile(this._bin, ['tpm', ...args, '--tcti', this.tcti], { timeout: 30000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`dps tpm ${args[0]} failed: ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      });
    });
  }

  /** `dps tpm show --output json`, read once: { registrationId, endorsementKey, storageRootKey } (base64). */
  show() {
    if (!this._shown) {
      this._shown = this._dps(['show', '--output', 'json']).then((out) => JSON.parse(out));
      this._shown.catch(() => { this._shown = undefined; });
    }
    return this._shown;
  }

  getEndorsementKey(callback) {
    return callbackOrPromise(async () => Buffer.from((await this.show()).endorsementKey, 'base64'), callback);
  }

  getStorageRootKey(callback) {
    return callbackOrPromise(async () => Buffer.from((await this.show()).storageRootKey, 'base64'), callback);
  }

  getRegistrationId(callback) {
    return callbackOrPromise(async () => this._registrationId || (await this.show()).registrationId, callback);
  }

  activateIdentityKey(identityKey, callback) {
    return callbackOrPromise(async () => {
      const blob = Buffer.from(identityKey).toString('base64');
      await this._dps(['activate', '--blob', blob]);
      this.activations.push(blob);
    }, callback);
  }

  signWithIdentity(dataToSign, callback) {
    return callbackOrPromise(async () => {
      const out = await this._dps(['sign', '--data-b64', Buffer.from(dataToSign).toString('base64')]);
      return Buffer.from(out.trim(), 'base64');
    }, callback);
  }
}

module.exports = { DpsTpmSecurityClient };
