"""A DNS-over-HTTPS stub for the federation tests: answers SRV questions for test names.

It speaks the JSON API (`GET ?name=...&type=SRV`, `accept: application/dns-json`) that the
Worker's discovery uses (src/runtime/discovery.rs) from a fixed dict, on loopback, over plain
HTTP or, given a certificate, HTTPS. Point an instance's `DOH_RESOLVER` at `stub.url`.

    records = {"_matrix-fed._tcp.hs1.test": ["10 0 8448 localhost."]}
    with DohStub(records) as stub:
        ...  # stub.url, stub.queries

A record value is a list of SRV data strings ("priority weight port target."), or
`DohStub.SERVFAIL` to make the resolver fail for that name. Unknown names are NXDOMAIN.
Run it by hand with `python doh_stub.py --port 8053 NAME=DATA ...`.
"""

from __future__ import annotations

import argparse
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SRV = 33
NOERROR, SERVFAIL_STATUS, NXDOMAIN = 0, 2, 3


class DohStub:
    SERVFAIL = object()

    def __init__(self, records: dict[str, object], *, ttl: int = 300,
                 certfile: str | None = None, keyfile: str | None = None):
        self.records = records
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/dns-query"

    def answer(self, name: str, qtype: str) -> dict:
        """The JSON a resolver would give for this question."""
        key = name.rstrip(".").lower()
        question = [{"name": key, "type": SRV if qtype.upper() == "SRV" else qtype}]
        value = self.records.get(key)
        if value is DohStub.SERVFAIL:
            return {"Status": SERVFAIL_STATUS, "Question": question}
        if value is None or qtype.upper() != "SRV":
            # Negative answer with an SOA, as real resolvers give it (RFC 2308).
            status = NXDOMAIN if value is None else NOERROR
            soa = {"name": "test.", "type": 6, "TTL": self.ttl,
                   "data": "ns.test. admin.test. 1 3600 600 86400 300"}
            return {"Status": status, "Question": question, "Authority": [soa]}
        answers = [{"name": key, "type": SRV, "TTL": self.ttl, "data": data} for data in value]
        return {"Status": NOERROR, "Question": question, "Answer": answers}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path != "/dns-query" or "name" not in query:
                    self._send(400, {"error": "expected /dns-query?name=...&type=..."})
                    return
                name, qtype = query["name"][0], query.get("type", ["A"])[0]
                stub.queries.append((name, qtype))
                self._send(200, stub.answer(name, qtype))

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/dns-json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler

    def __enter__(self) -> "DohStub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8053)
    parser.add_argument("record", nargs="*", help="NAME=PRIORITY WEIGHT PORT TARGET.")
    args = parser.parse_args()
    records: dict[str, object] = {}
    for item in args.record:
        name, _, data = item.partition("=")
        records.setdefault(name.lower(), []).append(data)
    stub = DohStub(records)
    stub._server.server_close()
    stub._server = ThreadingHTTPServer(("127.0.0.1", args.port), stub._handler())
    print(f"DoH stub on http://127.0.0.1:{args.port}/dns-query", flush=True)
    stub._server.serve_forever()


if __name__ == "__main__":
    main()
