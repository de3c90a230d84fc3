"""A MISP instance's side of a renkei node's gateway, with the partner certificate MISP
would be configured with: fetch the feed (manifest.json, hashes.csv, then every event
the manifest names) into a directory, as MISP caches a feed; or add an event.

usage: gateway.py BASE CA CERT KEY fetch DIR
       gateway.py BASE CA CERT KEY get UUID
       gateway.py BASE CA CERT KEY add EVENT_FILE QUERY
Prints one JSON object: {"events": N} after a fetch, {"status": HTTP} after a get, {"status": HTTP, "body": ...}
after an add.
"""
import json
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "taxii"))
from loopback import resolve_to_loopback  # noqa: E402

base, ca, cert, key, mode = sys.argv[1:6]
resolve_to_loopback(base)
session = requests.Session()
session.verify = ca
session.cert = (cert, key)

if mode == "fetch":
    out = Path(sys.argv[6])
    out.mkdir(parents=True, exist_ok=True)
    manifest = session.get(f"{base}/misp/feed/manifest.json")
    manifest.raise_for_status()
    (out / "manifest.json").write_text(manifest.text)
    hashes = session.get(f"{base}/misp/feed/hashes.csv")
    hashes.raise_for_status()
    (out / "hashes.csv").write_text(hashes.text)
    for uuid in manifest.json():
        event = session.get(f"{base}/misp/feed/{uuid}.json")
        event.raise_for_status()
        (out / f"{uuid}.json").write_text(event.text)
    print(json.dumps({"events": len(manifest.json())}))
elif mode == "get":
    answer = session.get(f"{base}/misp/feed/{sys.argv[6]}.json")
    print(json.dumps({"status": answer.status_code}))
elif mode == "add":
    event_file, query = sys.argv[6:8]
    answer = session.post(
        f"{base}/misp/events?{query}",
        data=Path(event_file).read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    print(json.dumps({"status": answer.status_code, "body": answer.json()}))
else:
    sys.exit(f"unknown mode {mode}")
