"""Asks a renkei node's TAXII gateway what a client should not, on purpose, and prints
each answer's status, media type and TAXII error body as JSON lines for the Rust test.

usage: errors.py BASE_URL CA CERT KEY
"""
import json
import sys

import requests
from loopback import resolve_to_loopback

base, ca, cert, key = sys.argv[1:5]
resolve_to_loopback(base)
session = requests.Session()
session.verify = ca
session.cert = (cert, key)
taxii = "application/taxii+json;version=2.1"
cols = session.get(base + "/api/collections/", headers={"Accept": taxii}).json()["collections"]
shared = next(c["id"] for c in cols if c["can_read"])
inbox = next(c["id"] for c in cols if c["can_write"])
asks = {
    "wrong accept": ("GET", "/api/collections/", {"Accept": "application/json"}, None),
    "unknown collection": ("GET", "/api/collections/00000000-0000-4000-8000-000000000000/objects/", {"Accept": taxii}, None),
    "write to the shared one": ("POST", f"/api/collections/{shared}/objects/", {"Accept": taxii, "Content-Type": taxii}, "{}"),
    "read the inbox": ("GET", f"/api/collections/{inbox}/objects/", {"Accept": taxii}, None),
    "wrong content type": ("POST", f"/api/collections/{inbox}/objects/", {"Accept": taxii, "Content-Type": "application/json"}, "{}"),
    "not json": ("POST", f"/api/collections/{inbox}/objects/", {"Accept": taxii, "Content-Type": taxii}, "{"),
    "bad added_after": ("GET", f"/api/collections/{shared}/objects/?added_after=yesterday", {"Accept": taxii}, None),
    "unknown object": ("GET", f"/api/collections/{shared}/objects/indicator--00000000-0000-4000-8000-000000000099/", {"Accept": taxii}, None),
    "unknown status": ("GET", "/api/status/nothing/", {"Accept": taxii}, None),
}
for name, (method, path, headers, body) in asks.items():
    r = session.request(method, base + path, headers=headers, data=body)
    print(json.dumps({"ask": name, "status": r.status_code,
                      "type": r.headers.get("Content-Type"), "body": r.json()}))
