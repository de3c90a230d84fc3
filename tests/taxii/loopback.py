"""Makes the host name of a node's TAXII URL resolve to 127.0.0.1, as DNS would in a
deployment: the node's certificate names its id (e.g. jp-mod), so clients must reach it
under that name, and the tests run on one machine."""
import socket
from urllib.parse import urlparse


def resolve_to_loopback(base_url):
    host = urlparse(base_url).hostname
    real = socket.getaddrinfo

    def resolve(name, *args, **kwargs):
        return real("127.0.0.1" if name == host else name, *args, **kwargs)

    socket.getaddrinfo = resolve
