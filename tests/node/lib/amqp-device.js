'use strict';
// Runs official-SDK devices over AMQP (azure-iot-provisioning-device-amqp `Amqp` or `AmqpWs`) in a process
// of its own, started by lib/dps.js `registerAmqp` with NODE_EXTRA_CA_CERTS = the service's CA: the SDK's
// AMQP transport has no CA option for symmetric keys (TOOLCHAIN §6), so the CA reaches TLS the way a user's
// would. Input: argv[2] = JSON { host, amqpPort, httpsPort, idScope, ws, devices: [{ registrationId, key? |
// cert?+keyPem?, payload? }] }. Output on stdout: a JSON array, one { registrationId, ok, result?, error? }
// per device, in order. All devices run at once (each its own SDK client and AMQP connection).

const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Amqp, AmqpWs } = require('azure-iot-provisioning-device-amqp');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');

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

async function one(d) {
  const { transport, host } = transportFor();
  const security = d.cert
    ? new X509Security(d.registrationId, { cert: d.cert, key: d.keyPem })
    : new SymmetricKeySecurityClient(d.registrationId, d.key);
  const client = ProvisioningDeviceClient.create(host, d.idScope || args.idScope, transport, security);
  if (d.payload !== undefined) client.setProvisioningPayload(d.payload);
  try {
    return { registrationId: d.registrationId, ok: true, result: await client.register() };
  } catch (err) {
    return { registrationId: d.registrationId, ok: false, error: describe(err) };
  }
}

Promise.all(args.devices.map(one)).then((results) => {
  process.stdout.write(JSON.stringify(results));
  process.exit(0);
}, (err) => {
  process.stderr.write(String(err && err.stack));
  process.exit(1);
});
