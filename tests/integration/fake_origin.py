"""A minimal federation server the test controls, for what no real server can be made to do on
cue: hold events our server has not seen, so that our server must fetch them (missing prev
events with `get_missing_events`, missing auth events with `event_auth`, the state at an event
past a gap with `/event` and `/state`).

It is a real server as far as our Worker can tell: its own name (`localhost:<port>`), its own
ed25519 key served and self-signed at `/_matrix/key/v2/server`, TLS with the test CA's leaf, and
requests and events signed with Synapse's own event-signing code (fedsign.py). It answers only
the few endpoints the tests need and records every request it gets.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from fedsign import SignedAs, event_id
from harness import free_port
from synapse_peer import FederationPair


class FakeOrigin:
    def __init__(self, pair: FederationPair):
        self.port = free_port()
        self.server_name = f"localhost:{self.port}"
        self.key = generate_signing_key("fake")
        self.signed = SignedAs(pair, self.server_name, self.key)
        # Events it will serve, by id; what get_missing_events and event_auth answer is chosen
        # by the test.
        self.missing_events: list[dict] = []
        self.auth_chains: dict[str, list[dict]] = {}
        # `/event/{id}` answers from `events`; `/state?event_id=` from `states` (state before the
        # event, auth chain).
        self.events: dict[str, dict] = {}
        self.states: dict[str, tuple[list[dict], list[dict]]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
                fake.requests.append((method, path, body))
                status, answer = fake.answer(method, path, body, query)
                self._answer(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pair.synapse.cert, pair.synapse.key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOrigin":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def answer(self, method: str, path: str, body: dict | None, query: dict | None = None) -> tuple[int, dict]:
        if path == "/_matrix/key/v2/server":
            keys = {"server_name": self.server_name, "old_verify_keys": {},
                    "valid_until_ts": int(time.time() * 1000) + 3_600_000,
                    "verify_keys": {f"ed25519:{self.key.version}": {
                        "key": encode_verify_key_base64(get_verify_key(self.key))}}}
            return 200, sign_json(keys, self.server_name, self.key)
        if path == "/_matrix/federation/v1/version":
            return 200, {"server": {"name": "fake origin", "version": "0"}}
        if path.startswith("/_matrix/federation/v1/get_missing_events/"):
            return 200, {"events": self.missing_events}
        if path.startswith("/_matrix/federation/v1/event_auth/"):
            wanted = unquote(path.rsplit("/", 1)[1])
            if wanted in self.auth_chains:
                return 200, {"auth_chain": self.auth_chains[wanted]}
            return 404, {"errcode": "M_NOT_FOUND", "error": "unknown event"}
        if path.startswith("/_matrix/federation/v1/event/"):
            wanted = unquote(path.rsplit("/", 1)[1])
            if wanted in self.events:
                return 200, {"origin": self.server_name, "origin_server_ts": int(time.time() * 1000),
                             "pdus": [self.events[wanted]]}
            return 404, {"errcode": "M_NOT_FOUND", "error": "unknown event"}
        if path.startswith("/_matrix/federation/v1/state/"):
            wanted = (query or {}).get("event_id", [""])[0]
            if wanted in self.states:
                pdus, chain = self.states[wanted]
                return 200, {"pdus": pdus, "auth_chain": chain}
            return 404, {"errcode": "M_NOT_FOUND", "error": "unknown event"}
        if path.startswith("/_matrix/federation/v1/send/"):
            return 200, {"pdus": {}}
        return 404, {"errcode": "M_UNRECOGNIZED", "error": "not served by the fake origin"}

    def asked(self, prefix: str) -> list[dict | None]:
        return [body for method, path, body in self.requests if path.startswith(prefix)]

    # -- acting in a room of our server --------------------------------------------------------------

    def join(self, room_id: str, localpart: str = "eve") -> tuple[str, str, dict]:
        """Joins `@localpart:<fake>` to a room of our server (make_join, sign, send_join v2);
        returns the user id, the room version and the join PDU."""
        user_id = f"@{localpart}:{self.server_name}"
        template = self.signed.request("GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}?ver=10&ver=11&ver=12")
        assert template.status_code == 200, template.text
        version = template.json()["room_version"]
        pdu = self.signed.pdu(version, template.json()["event"])
        answer = self.signed.request("PUT", f"/_matrix/federation/v2/send_join/{q(room_id)}/{q(event_id(version, pdu))}", pdu)
        assert answer.status_code == 200, answer.text
        return user_id, version, pdu

    def event(self, version: str, **fields) -> tuple[str, dict]:
        pdu = self.signed.pdu(version, fields)
        return event_id(version, pdu), pdu


def q(value: str) -> str:
    from urllib.parse import quote
    return quote(value, safe="")
