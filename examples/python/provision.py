"""Provision one device over MQTT with the official Azure IoT Python SDK — unchanged; only the host and
the trusted CA differ from Azure.

    python provision.py <id-scope> <registration-id> <symmetric-key> <ca.pem> [--websockets]
"""
import sys

from azure.iot.device import ProvisioningDeviceClient

if len(sys.argv) < 5:
    sys.exit(__doc__)
id_scope, registration_id, key, ca_path = sys.argv[1:5]
client = ProvisioningDeviceClient.create_from_symmetric_key(
    provisioning_host="127.0.0.1",  # MQTT on 8883, or MQTT over WebSockets on 443
    registration_id=registration_id,
    id_scope=id_scope,
    symmetric_key=key,
    server_verification_cert=open(ca_path).read(),
    websockets="--websockets" in sys.argv,
)
result = client.register()
print(result.status, result.registration_state.assigned_hub, result.registration_state.device_id, result.registration_state.sub_status)
