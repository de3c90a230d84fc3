"""Adds STIX objects to a renkei node's TAXII 2.1 inbox with taxii2-client, as a CTI
tool pushing intelligence would. Prints the status resource as JSON.

usage: write.py BASE_URL CA CERT KEY ENVELOPE_JSON_FILE
"""
import json
import sys

from loopback import resolve_to_loopback
from taxii2client.v21 import Server

base, ca, cert, key, envelope_file = sys.argv[1:6]
resolve_to_loopback(base)

server = Server(base + "/taxii2/", verify=ca, cert=(cert, key))
inbox = next(c for c in server.api_roots[0].collections if c.can_write)
with open(envelope_file) as f:
    envelope = json.load(f)
status = inbox.add_objects(envelope)
print(json.dumps({
    "inbox": inbox.title,
    "status": status.status,
    "total_count": status.total_count,
    "success_count": status.success_count,
    "failure_count": status.failure_count,
    "successes": status.successes,
    "failures": status.failures,
}))
