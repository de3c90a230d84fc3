"""Holds one HTTPS connection to a renkei node's TAXII gateway (a requests Session keeps
it alive), asks for the collections, waits for a line on stdin, and asks again on the
same connection. Prints each status code on its own line.

usage: kept.py BASE_URL CA CERT KEY
"""
import socket
import sys
from urllib.parse import urlparse

import requests

base, ca, cert, key = sys.argv[1:5]
host = urlparse(base).hostname
_resolve = socket.getaddrinfo


def resolve(name, *args, **kwargs):
    return _resolve("127.0.0.1" if name == host else name, *args, **kwargs)


socket.getaddrinfo = resolve
session = requests.Session()
session.verify = ca
session.cert = (cert, key)
accept = {"Accept": "application/taxii+json;version=2.1"}
print(session.get(base + "/api/collections/", headers=accept).status_code, flush=True)
sys.stdin.readline()
print(session.get(base + "/api/collections/", headers=accept).status_code, flush=True)
