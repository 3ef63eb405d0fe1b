#!/usr/bin/env python3
"""Call an agentca-verified service from Python, with `requests`.

The agent's identity comes from the files `agentca run --out-dir DIR`
keeps current: `identity.pem` (certificate chain and key in one file, so
they always match) and `bundle.pem` (the CA's root). Certificates live
minutes: the client notices a renewal (the directory's `..data` link
points at a new generation) and opens new connections with the new
certificate; the old connection pool is closed.

The service presents an agentca certificate too, which names a SPIFFE ID
(a URI SAN), not a host name. The client checks its chain against the
bundle and its SPIFFE ID against --server-id, instead of a host name.

    python3 examples/python/client.py --identity demo/hello \\
        --server-id spiffe://agentca.local/tenant/acme/env/dev/agent/tickets \\
        https://127.0.0.1:9443/whoami

Exit codes: 0 when every call answered 2xx, 1 when a call failed (the
reason on stderr), 2 for bad arguments.

Needs `requests` (Debian: python3-requests); works with urllib3 1.26 and 2.x.
"""

import argparse
import os
import ssl
import sys
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class SpiffeIdMismatch(ssl.SSLError):
    """The service's certificate names another SPIFFE ID than expected."""


def uri_sans(peer_cert):
    """The URI subject alternative names of a certificate, as `getpeercert()` gives it."""
    return [value for kind, value in peer_cert.get("subjectAltName", ()) if kind == "URI"]


def make_pool_class(server_id):
    """A connection pool whose connections check the server's SPIFFE ID after the handshake."""

    class SpiffeConnection(HTTPSConnection):
        def connect(self):
            super().connect()
            uris = uri_sans(self.sock.getpeercert() or {})
            if uris != [server_id]:
                self.close()
                raise SpiffeIdMismatch(f"the service is {uris or 'no SPIFFE ID'}, not {server_id}")

    class SpiffePool(HTTPSConnectionPool):
        ConnectionCls = SpiffeConnection

    return SpiffePool


class AgentcaAdapter(HTTPAdapter):
    """Presents the agent's certificate and verifies the service by its SPIFFE ID."""

    def __init__(self, context, server_id):
        self._context = context
        self._server_id = server_id
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self._context
        # The context verifies the chain; the name check is the SPIFFE ID's,
        # done by the connection above, not urllib3's host-name match.
        kwargs["assert_hostname"] = False
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": HTTPConnectionPool,
            "https": make_pool_class(self._server_id),
        }


class AgentSession:
    """A requests session that follows the identity files `agentca run` keeps current."""

    def __init__(self, identity_dir, server_id):
        self.identity_dir = identity_dir
        self.server_id = server_id
        self.generation = None
        self.session = None

    def _current_generation(self):
        # identity.pem -> ..data/identity.pem, and ..data is switched with
        # one rename per renewal: the resolved path names the generation.
        return os.path.realpath(os.path.join(self.identity_dir, "identity.pem"))

    def get(self):
        """The session for the current certificate, new after each renewal."""
        generation = self._current_generation()
        if generation != self.generation:
            context = ssl.create_default_context(cafile=os.path.join(os.path.dirname(generation), "bundle.pem"))
            context.check_hostname = False  # the SPIFFE ID is checked instead
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_cert_chain(generation)  # chain and key from one file
            session = requests.Session()
            session.mount("https://", AgentcaAdapter(context, self.server_id))
            # Trust the bundle alone (never the system's public CAs).
            session.verify = os.path.join(os.path.dirname(generation), "bundle.pem")
            if self.session is not None:
                self.session.close()
            self.session, self.generation = session, generation
        return self.session


def main():
    parser = argparse.ArgumentParser(description="Call an agentca-verified service with requests.")
    parser.add_argument("url", help="the service's URL, e.g. https://127.0.0.1:9443/whoami")
    parser.add_argument("--identity", required=True, help="the directory `agentca run --out-dir` keeps current")
    parser.add_argument("--server-id", required=True, help="the SPIFFE ID the service must present")
    parser.add_argument("--count", type=int, default=1, help="calls to make (0: until stopped)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between calls")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each call")
    args = parser.parse_args()
    if not args.server_id.startswith("spiffe://"):
        parser.error("--server-id must be a spiffe:// ID")
    if args.count < 0 or args.interval < 0 or args.timeout <= 0:
        parser.error("--count and --interval must not be negative, --timeout must be positive")

    agent = AgentSession(args.identity, args.server_id)
    call = 0
    while args.count == 0 or call < args.count:
        if call:
            time.sleep(args.interval)
        call += 1
        try:
            response = agent.get().get(args.url, timeout=args.timeout)
        except (requests.exceptions.RequestException, ssl.SSLError, OSError) as e:
            print(f"client.py: call {call} failed: {e}", file=sys.stderr)
            return 1
        print(response.text.rstrip("\n"), flush=True)
        if not response.ok:
            print(f"client.py: call {call}: the service answered {response.status_code}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
