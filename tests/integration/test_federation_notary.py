"""Our server as a key notary, and as a client of one (spec: server-server API, "Querying keys
through another server"), against a real Synapse (fixture `federation_pair`).

- `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query` answer with our own
  keys and with other servers' keys: each document carries its origin's own signature and ours
  added as the notary; a cached document is served again unless it expires before the query's
  `minimum_valid_until_ts`, and then it is fetched again from the origin.
- With `TRUSTED_KEY_SERVERS` naming the Synapse peer, our server gets a third server's keys
  through Synapse when that server itself is down, checking both Synapse's and the origin's
  signatures.
"""

from __future__ import annotations

import time

import pytest
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from synapse_peer import Synapse
from test_federation_peer import notary_query, q, record, worker_only

pytestmark = worker_only


def verify_key(doc: dict):
    """The one current verify key of a key document, for signedjson."""
    (key_id, entry), = doc["verify_keys"].items()
    return decode_verify_key_bytes(key_id, decode_base64(entry["key"]))


def our_key(pair):
    return verify_key(pair.ours.get("/_matrix/key/v2/server").json())


def query_one(pair, server_name: str, **params) -> list[dict]:
    response = pair.ours.get(f"/_matrix/key/v2/query/{q(server_name)}", params=params)
    assert response.status_code == 200, response.text
    return response.json()["server_keys"]


def query_many(pair, criteria: dict) -> list[dict]:
    response = pair.ours.request("POST", "/_matrix/key/v2/query", json={"server_keys": criteria})
    assert response.status_code == 200, response.text
    return response.json()["server_keys"]


def key_fetches(synapse: Synapse) -> int:
    """How many times Synapse's key server has been asked for its keys (its access log)."""
    return synapse.log_text().count('"GET /_matrix/key/v2/server ')


def test_our_notary_serves_our_own_keys(federation_pair):
    pair = federation_pair
    own = pair.ours.get("/_matrix/key/v2/server").json()
    key_id, = own["verify_keys"]
    for docs in (query_one(pair, pair.our_name),
                 query_many(pair, {pair.our_name: {key_id: {"minimum_valid_until_ts": 0}}})):
        doc, = docs
        assert doc["server_name"] == pair.our_name
        assert doc["verify_keys"] == own["verify_keys"]
        verify_signed_json(doc, pair.our_name, our_key(pair))


def test_our_notary_relays_synapse_keys_with_both_signatures(federation_pair, request):
    pair, synapse = federation_pair, federation_pair.synapse
    origin = synapse.federation("GET", "/_matrix/key/v2/server").json()
    key_id, = origin["verify_keys"]
    began = time.monotonic()
    by_get = query_one(pair, synapse.server_name)
    record(request, "notary_get_s", time.monotonic() - began)
    by_post = query_many(pair, {synapse.server_name: {key_id: {"minimum_valid_until_ts": int(time.time() * 1000)}}})
    for docs in (by_get, by_post):
        doc, = docs
        assert doc["server_name"] == synapse.server_name
        assert doc["verify_keys"] == origin["verify_keys"]
        # The origin's own signature, as Synapse made it, and ours as the notary.
        verify_signed_json(doc, synapse.server_name, verify_key(origin))
        verify_signed_json(doc, pair.our_name, our_key(pair))
    # An unknown key id still gets the server's keys (the spec allows more than was asked),
    # and a server that cannot be reached gets nothing, not an error.
    assert [d["server_name"] for d in query_many(pair, {synapse.server_name: {"ed25519:nope": {}}})] \
        == [synapse.server_name]
    assert query_one(pair, "localhost:1") == []


def test_our_notary_fetches_again_only_for_a_later_minimum_valid_until_ts(federation_pair):
    pair, synapse = federation_pair, federation_pair.synapse
    doc, = query_one(pair, synapse.server_name)  # cached now, whatever happened before
    fetches = key_fetches(synapse)
    doc, = query_one(pair, synapse.server_name, minimum_valid_until_ts=doc["valid_until_ts"])
    assert key_fetches(synapse) == fetches, "a fresh enough cached document was fetched again"

    later = doc["valid_until_ts"] + 1
    doc, = query_many(pair, {synapse.server_name: {"ed25519:any": {"minimum_valid_until_ts": later}}})
    deadline = time.monotonic() + 3  # Synapse writes its access log as each request completes
    while key_fetches(synapse) == fetches and time.monotonic() < deadline:
        time.sleep(0.1)
    assert key_fetches(synapse) == fetches + 1, "a document expiring too soon was not fetched again"
    verify_signed_json(doc, pair.our_name, our_key(pair))


@pytest.fixture
def third_server(federation_pair, tmp_path):
    """A third server (another Synapse) whose keys the Synapse peer has cached, then stopped."""
    tls = federation_pair.ca.parent
    third = Synapse(tmp_path / "third", ca=federation_pair.ca, cert=tls / "tls.crt", key=tls / "tls.key")
    with third:
        doc = third.federation("GET", "/_matrix/key/v2/server").json()
        key_id, = doc["verify_keys"]
        assert notary_query(federation_pair.synapse, third.server_name, key_id), "the peer did not cache it"
    return third, doc


def test_trusted_key_servers_get_keys_of_a_server_that_is_down(federation_pair, third_server, request):
    pair, synapse = federation_pair, federation_pair.synapse
    third, origin = third_server
    # Without a notary our server cannot get the keys of a server that is down.
    assert query_one(pair, third.server_name) == []

    pair.ours.extra_env["TRUSTED_KEY_SERVERS"] = synapse.server_name
    pair.ours.stop()
    pair.ours.start()
    try:
        began = time.monotonic()
        doc, = query_one(pair, third.server_name)
        record(request, "key_fetch_via_notary_s", time.monotonic() - began)
        assert doc["server_name"] == third.server_name
        assert doc["verify_keys"] == origin["verify_keys"]
        verify_signed_json(doc, third.server_name, verify_key(origin))
        synapse_doc = synapse.federation("GET", "/_matrix/key/v2/server").json()
        verify_signed_json(doc, synapse.server_name, verify_key(synapse_doc))
        verify_signed_json(doc, pair.our_name, our_key(pair))
    finally:
        del pair.ours.extra_env["TRUSTED_KEY_SERVERS"]
        pair.ours.stop()
        pair.ours.start()
