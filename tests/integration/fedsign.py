"""Speaking federation to our server as the Synapse peer, with Synapse's own signing key and
Synapse's own event-signing code, for what a test cannot make Synapse send: hostile input
(bad signatures, wrong hashes, events that fail auth, replayed transactions) and endpoints
Synapse only calls in situations a test cannot easily arrange.

Our server verifies these exactly as it verifies Synapse: it fetches the peer's key from the
peer's key server, so a request signed here is indistinguishable from one Synapse sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from urllib.parse import urlsplit

import requests
from signedjson.key import read_signing_keys
from signedjson.sign import sign_json

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.crypto.event_signing import add_hashes_and_signatures
from synapse.events import make_event_from_dict

from synapse_peer import FederationPair


class SignedAs:
    """Federation requests and PDUs signed as a server (`pair.synapse` by default), sent to
    `pair.ours`."""

    def __init__(self, pair: FederationPair, origin: str | None = None, key=None):
        """As the Synapse peer, or as another `origin` with its signing `key`."""
        self.pair = pair
        if origin is None:
            origin = pair.synapse.server_name
            key_file, = pair.synapse.directory.glob("*.signing.key")
            key, = read_signing_keys(key_file.read_text().splitlines())
        self.origin, self.key = origin, key

    # -- requests ---------------------------------------------------------------------------------

    def authorization(self, method: str, uri: str, body: dict | None) -> str:
        """The X-Matrix header for `method uri` (path and query as sent) with `body`."""
        request = {"method": method, "uri": uri, "origin": self.origin, "destination": self.pair.our_name}
        if body is not None:
            request["content"] = body
        signature = sign_json(request, self.origin, self.key)["signatures"][self.origin]
        key_id = f"{self.key.alg}:{self.key.version}"
        return (f'X-Matrix origin="{self.origin}",destination="{self.pair.our_name}",'
                f'key="{key_id}",sig="{signature[key_id]}"')

    def request(self, method: str, uri: str, body: dict | None = None) -> requests.Response:
        """A signed federation request to our server; `uri` is the path with its query string."""
        assert urlsplit(uri).path.startswith("/_matrix/"), uri
        headers = {"Authorization": self.authorization(method, uri, body)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        data = None if body is None else json.dumps(body)
        return self.pair.ours.request(method, uri, headers=headers, data=data)

    def transaction(self, pdus: list[dict], edus: list[dict] | None = None) -> dict:
        return {"origin": self.origin, "origin_server_ts": int(time.time() * 1000), "pdus": pdus,
                "edus": edus or []}

    def send_transaction(self, txn_id: str, pdus: list[dict], edus: list[dict] | None = None) -> requests.Response:
        return self.request("PUT", f"/_matrix/federation/v1/send/{txn_id}", self.transaction(pdus, edus))

    def declare_only(self, method: str, uri: str, body: dict) -> tuple[int, dict]:
        """A signed request whose headers declare `body` (its length, `Expect: 100-continue`) but
        which sends the body only if the server asks for it: (status, JSON answer). A server that
        refuses from the declared length answers without ever receiving the body. (Sending it
        anyway is no test of that: workerd closes a TLS connection whose body it did not read,
        and the client, still writing, sees the connection cut instead of the answer.)"""
        data = json.dumps(body).encode()
        ours = self.pair.ours
        context = ssl.create_default_context(cafile=ours.verify if isinstance(ours.verify, str) else None)
        connection = http.client.HTTPSConnection("localhost", ours.port, context=context, timeout=30)
        try:
            connection.putrequest(method, uri)
            for name, value in (("Authorization", self.authorization(method, uri, body)),
                                ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                ("Expect", "100-continue")):
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()

    # -- events -----------------------------------------------------------------------------------

    def pdu(self, room_version: str, event: dict) -> dict:
        """`event` (room_id, sender, type, content, prev_events, auth_events, depth, ...) with its
        content hash and the peer's signature added, as Synapse would send it."""
        event = {"origin_server_ts": int(time.time() * 1000), **event}
        add_hashes_and_signatures(KNOWN_ROOM_VERSIONS[room_version], event, self.origin, self.key)
        return event


def event_id(room_version: str, pdu: dict) -> str:
    """The reference-hash event id of a PDU, as Synapse computes it."""
    return make_event_from_dict(dict(pdu), KNOWN_ROOM_VERSIONS[room_version]).event_id
