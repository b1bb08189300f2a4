// Provision one device with the official Azure IoT Node SDK — unchanged; only the host and the
// trusted CA differ from Azure (run with NODE_EXTRA_CA_CERTS=<data-dir>/ca.pem).
//   node provision.js <id-scope> <registration-id> <symmetric-key> [host]
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

const [idScope, registrationId, key, host = '127.0.0.1'] = process.argv.slice(2);
if (!idScope || !registrationId || !key) {
  console.error('usage: node provision.js <id-scope> <registration-id> <symmetric-key> [host]');
  process.exit(2);
}
const security = new SymmetricKeySecurityClient(registrationId, key);
const client = ProvisioningDeviceClient.create(host, idScope, new Http(), security);
client.register((err, result) => {
  if (err) {
    console.error('registration failed:', err.message || err);
    process.exit(1);
  }
  console.log(JSON.stringify(result, null, 2));
});
