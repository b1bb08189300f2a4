// Provision one X.509 device with the official Azure IoT Node SDK — unchanged; only the host and the
// trusted CA differ from Azure (run with NODE_EXTRA_CA_CERTS=<data-dir>/ca.pem).
//   node provision-x509.js <id-scope> <registration-id> <chain.pem> <key.pem> [host]
const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { X509Security } = require('azure-iot-security-x509');

const [idScope, registrationId, certFile, keyFile, host = '127.0.0.1'] = process.argv.slice(2);
if (!idScope || !registrationId || !certFile || !keyFile) {
  console.error('usage: node provision-x509.js <id-scope> <registration-id> <chain.pem> <key.pem> [host]');
  process.exit(2);
}
const security = new X509Security(registrationId, {
  cert: fs.readFileSync(certFile, 'utf8'), // device certificate + intermediates
  key: fs.readFileSync(keyFile, 'utf8'),
});
const client = ProvisioningDeviceClient.create(host, idScope, new Http(), security);
client.register((err, result) => {
  if (err) {
    console.error('registration failed:', err.message || err);
    process.exit(1);
  }
  console.log(JSON.stringify(result, null, 2));
});
