"""Creates a blob container on Azurite, the Azure Blob emulator.

Usage: azurite_container.py ENDPOINT CONTAINER, where ENDPOINT is
http://127.0.0.1:PORT/devstoreaccount1. Signs the request with SharedKey and
the emulator's published well-known account key (object_store cannot create
containers). Prints the HTTP status; exits 1 unless it is 201 (created) or
409 (already there).
"""
import base64
import hashlib
import hmac
import sys
import urllib.error
import urllib.request
from email.utils import formatdate

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

def main() -> None:
    endpoint, container = sys.argv[1].rstrip("/"), sys.argv[2]
    date = formatdate(usegmt=True)
    version = "2021-10-04"
    canon_headers = f"x-ms-date:{date}\nx-ms-version:{version}\n"
    canon_resource = f"/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
    to_sign = "PUT\n\n\n\n\napplication/octet-stream\n" + "\n" * 6 + canon_headers + canon_resource
    sig = base64.b64encode(hmac.new(base64.b64decode(KEY), to_sign.encode(), hashlib.sha256).digest()).decode()
    req = urllib.request.Request(f"{endpoint}/{container}?restype=container", method="PUT", data=b"")
    req.add_header("x-ms-date", date)
    req.add_header("x-ms-version", version)
    req.add_header("Content-Type", "application/octet-stream")
    req.add_header("Authorization", f"SharedKey {ACCOUNT}:{sig}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
        print(e.read()[:300], file=sys.stderr)
    print(status)
    if status not in (201, 409):
        sys.exit(1)


if __name__ == "__main__":
    main()
