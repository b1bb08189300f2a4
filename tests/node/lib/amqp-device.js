'use strict';
// Runs official-SDK devices over AMQP (azure-iot-provisioning-device-amqp `Amqp` or `AmqpWs`) in a process
// of its own, started by lib/dps.js `registerAmqp` with NODE_EXTRA_CA_CERTS = the service's CA: the SDK's
// AMQP transport has no CA option for symmetric keys (TOOLCHAIN §6), so the CA reaches TLS the way a user's
// would. Input: argv[2] = JSON { host, amqpPort, httpsPort, idScope, ws, devices: [{ registrationId, key? |
// cert?+keyPem? | tpm?: { tcti }, payload? }] } (`tpm`: the TPM security client of lib/tpm-security.js on that
// TPM). Output on stdout: a JSON array, one { registrationId, ok, result?, error?, activations? } per device, in
// order (`activations`: the blobs a TPM device activated, base64; `settled: false`: register() never called
// back, see the end of this file). All devices run at once (each its own SDK client and AMQP connection).

const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Amqp, AmqpWs } = require('azure-iot-provisioning-device-amqp');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');
const { DpsTpmSecurityClient } = require('./tpm-security');

const args = JSON.parse(process.argv[2]);

function transportFor() {
  if (!args.ws) return { transport: new Amqp(), host: `${args.host}:${args.amqpPort}` };
  // `AmqpWs` dials wss://<host>:443/$iothub/websocket; an agent with `port` reaches the HTTPS port instead.
  const transport = new AmqpWs();
  transport.setTransportOptions({ webSocketAgent: new https.Agent({ port: args.httpsPort }) });
  return { transport, host: args.host };
}

/** The parts of an SDK error a test asserts on (a rejected request's AMQP error, or an operation status). */
function describe(err) {
  const amqp = err && (err.amqpError || (err.condition ? err : undefined));
  let body;
  const description = amqp && amqp.description;
  if (typeof description === 'string') { try { body = JSON.parse(description); } catch (_) { /* not JSON */ } }
  return {
    name: err && err.name,
    message: err && err.message,
    condition: amqp && amqp.condition,
    description,
    info: amqp && amqp.info,
    body,
    result: err && err.result,
  };
}

// What each device reported, by index; a device whose register() never settles keeps its placeholder.
const results = args.devices.map((d) => ({
  registrationId: d.registrationId,
  ok: false,
  settled: false,
  error: { message: 'register() never settled: the SDK dropped the error (it ended with nothing left to wait for)' },
}));

async function one(d, i) {
  const { transport, host } = transportFor();
  let security;
  if (d.tpm) security = new DpsTpmSecurityClient({ tcti: d.tpm.tcti, registrationId: d.registrationId });
  else if (d.cert) security = new X509Security(d.registrationId, { cert: d.cert, key: d.keyPem });
  else security = new SymmetricKeySecurityClient(d.registrationId, d.key);
  const client = ProvisioningDeviceClient.create(host, d.idScope || args.idScope, transport, security);
  if (d.payload !== undefined) client.setProvisioningPayload(d.payload);
  // A TPM device's activated blobs, live (also in the placeholder of a register() that never settles).
  if (d.tpm) results[i].activations = security.activations;
  const activations = d.tpm ? { activations: security.activations } : {};
  try {
    results[i] = { registrationId: d.registrationId, ok: true, result: await client.register(), ...activations };
  } catch (err) {
    results[i] = { registrationId: d.registrationId, ok: false, error: describe(err), ...activations };
  }
}

let written = false;
function report() {
  if (written) return;
  written = true;
  process.stdout.write(JSON.stringify(results));
}

// azure-iot-provisioning-device-amqp 1.9.1 loses a connection error during the TPM SASL exchange before the
// blob arrives (`tpmConnectionComplete` is emitted with no listener): register() then never calls back and the
// event loop just empties. Report what is known instead of exiting without output.
process.on('beforeExit', report);

Promise.all(args.devices.map(one)).then(() => {
  report();
  process.exit(0);
}, (err) => {
  process.stderr.write(String(err && err.stack));
  process.exit(1);
});
