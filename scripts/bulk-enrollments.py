"""Enrollment files for the bulk-import measurement (BENCHMARKS.md).
usage: bulk-enrollments.py N keys|nokeys ndjson|array PREFIX OUT"""
import sys, os, base64, json
n=int(sys.argv[1]); keys=sys.argv[2]=='keys'; fmt=sys.argv[3]; prefix=sys.argv[4]
out=open(sys.argv[5],'w')
if fmt=='array': out.write('[\n')
for i in range(n):
    e={"registrationId":f"{prefix}-{i:07d}","attestation":{"type":"symmetricKey"}}
    if keys:
        e["attestation"]["symmetricKey"]={"primaryKey":base64.b64encode(os.urandom(32)).decode(),"secondaryKey":base64.b64encode(os.urandom(32)).decode()}
    s=json.dumps(e,separators=(',',':'))
    if fmt=='array':
        out.write(s + (',\n' if i<n-1 else '\n'))
    else:
        out.write(s+'\n')
if fmt=='array': out.write(']\n')
