'use strict';
// An IoT Hub stand-in for the `azureIotHub` connector (§7.4): a TLS server on 127.0.0.1 that answers
// GET/PUT/DELETE /devices/{id} and GET/PATCH /twins/{id} like IoT Hub's service API and keeps every identity
// it receives. `unavailable(n)` makes the next n identity PUTs answer 503 (a hub that is down for a while),
// `refuse(n)` answers them 400 (a hub that will not take the device); `calls` counts what it answered, so a
// test can tell how often the service came back.

const https = require('node:https');
const dps = require('./dps');
const certs = require('./certs');

/** Starts a stand-in whose certificate chains to its own CA (`caPem`, for the linked hub's caCertificate). */
async function startHubStandIn(dir) {
  const ca = certs.openssl.root(dir, 'hub-ca');
  const leaf = certs.openssl.device(dir, '127.0.0.1', {
    issuer: ca,
    ext: ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1'],
  });
  const devices = new Map();
  const calls = { put: 0, unavailable: 0, delete: 0 };
  let failPuts = 0;
  let refusePuts = 0;
  const server = https.createServer({ key: leaf.keyPem, cert: leaf.pem }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, 'https://127.0.0.1');
      const [, collection, raw] = url.pathname.split('/');
      const id = decodeURIComponent(raw || '');
      const send = (status, body) => {
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...(status === 404 ? { 'iothub-errorcode': 'DeviceNotFound' } : {}) });
        res.end(body === undefined ? '' : JSON.stringify(body));
      };
      if (collection === 'devices' && req.method === 'GET') return devices.has(id) ? send(200, { ...devices.get(id), etag: 'e1' }) : send(404, { Message: 'DeviceNotFound' });
      if (collection === 'devices' && req.method === 'PUT') {
        calls.put += 1;
        if (refusePuts > 0) {
          refusePuts -= 1;
          calls.refused = (calls.refused || 0) + 1;
          return send(400, { Message: 'ArgumentInvalid: refused by the test' });
        }
        if (failPuts > 0) {
          failPuts -= 1;
          calls.unavailable += 1;
          return send(503, { Message: 'ServiceUnavailable' });
        }
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        devices.set(id, body);
        return send(200, { ...body, etag: 'e1' });
      }
      if (collection === 'devices' && req.method === 'DELETE') { calls.delete += 1; devices.delete(id); return send(204); }
      if (collection === 'twins' && req.method === 'PATCH') return send(200, { deviceId: id });
      if (collection === 'twins' && req.method === 'GET') return send(404, { Message: 'DeviceNotFound' });
      return send(400, { Message: `unexpected ${req.method} ${url.pathname}` });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    devices,
    calls,
    port,
    caPem: ca.pem,
    unavailable(n) { failPuts = n; },
    refuse(n) { refusePuts = n; },
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Links `hostName` to the service with the `azureIotHub` connector pointed at the stand-in. */
function linkStandIn(svc, hostName, hub, { applyAllocationPolicy = false } = {}) {
  return dps.serviceCall(svc, 'PUT', `/linkedHubs/${encodeURIComponent(hostName)}`, {
    hostName,
    allocationWeight: 1,
    applyAllocationPolicy,
    connector: 'azureIotHub',
    connectionString: `HostName=${hostName};SharedAccessKeyName=iothubowner;SharedAccessKey=${dps.randomKey(32)};GatewayHostName=127.0.0.1:${hub.port}`,
    caCertificate: hub.caPem,
  });
}

module.exports = { startHubStandIn, linkStandIn };
