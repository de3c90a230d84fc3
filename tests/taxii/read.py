"""Reads a renkei node's TAXII 2.1 gateway with taxii2-client, as a CTI tool would:
discovery -> API root -> collections -> objects in pages -> manifest. Prints what it
saw as one JSON object for the Rust test to check.

usage: read.py BASE_URL CA CERT KEY PER_PAGE
The node's certificate names its id (e.g. jp-mod), so the URL uses that name; it is
resolved to 127.0.0.1 here, as DNS would in a deployment.
"""
import json
import sys

from loopback import resolve_to_loopback
from taxii2client.v21 import Server, as_pages

base, ca, cert, key, per_page = sys.argv[1:6]
resolve_to_loopback(base)

server = Server(base + "/taxii2/", verify=ca, cert=(cert, key))
api_root = server.api_roots[0]
collections = api_root.collections
out = {
    "title": server.title,
    "api_roots": [r.url for r in server.api_roots],
    "versions": api_root.versions,
    "collections": [
        {"id": c.id, "title": c.title, "can_read": c.can_read, "can_write": c.can_write}
        for c in collections
    ],
}
if collections:
    c = next(c for c in collections if c.can_read)
    pages, ids, markings = [], [], {}
    for envelope in as_pages(c.get_objects, per_request=int(per_page)):
        objects = envelope.get("objects", [])
        pages.append(len(objects))
        ids.extend(o["id"] for o in objects)
        markings.update((o["id"], o.get("object_marking_refs")) for o in objects)
    out["pages"] = pages
    out["object_ids"] = ids
    out["markings"] = markings
    manifest = []
    for envelope in as_pages(c.get_manifest, per_request=int(per_page)):
        manifest.extend(envelope.get("objects", []))
    out["manifest"] = manifest
    one = c.get_object(ids[0]) if ids else {}
    out["one_object"] = [o["id"] for o in one.get("objects", [])]
    out["indicators"] = len(c.get_objects(type="indicator").get("objects", []))
print(json.dumps(out))
