"""Holds one HTTPS connection to a renkei node's TAXII gateway (a requests Session keeps
it alive), asks for the collections, waits for a line on stdin, and asks again on the
same connection. Prints each status code on its own line.

usage: kept.py BASE_URL CA CERT KEY
"""
import sys

import requests
from loopback import resolve_to_loopback

base, ca, cert, key = sys.argv[1:5]
resolve_to_loopback(base)
session = requests.Session()
session.verify = ca
session.cert = (cert, key)
accept = {"Accept": "application/taxii+json;version=2.1"}
print(session.get(base + "/api/collections/", headers=accept).status_code, flush=True)
sys.stdin.readline()
print(session.get(base + "/api/collections/", headers=accept).status_code, flush=True)
