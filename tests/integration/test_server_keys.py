"""The key server: self-signed, verified by Synapse's own signing library, and stable."""

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from signedjson.key import (decode_signing_key_base64, decode_verify_key_bytes, encode_signing_key_base64,
                            encode_verify_key_base64, generate_signing_key, get_verify_key)
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

import pytest

from harness import ROOT, Homeserver


def verified_keys(hs):
    """Fetches the key document and checks it the way a remote server would."""
    response = hs.get("/_matrix/key/v2/server")
    assert response.status_code == 200
    doc = response.json()
    assert doc["server_name"] == hs.server_name
    assert doc["valid_until_ts"] > time.time() * 1000 + 3_600_000
    (key_id, entry), = doc["verify_keys"].items()
    algorithm, version = key_id.split(":")
    assert algorithm == "ed25519"
    verify_key = decode_verify_key_bytes(key_id, decode_base64(entry["key"]))
    verify_signed_json(doc, hs.server_name, verify_key)
    # The check is real: a changed field must fail it.
    tampered = dict(doc, valid_until_ts=doc["valid_until_ts"] + 1)
    with pytest.raises(SignatureVerifyException):
        verify_signed_json(tampered, hs.server_name, verify_key)
    return key_id, entry["key"], doc["old_verify_keys"]


def test_key_document_verifies_with_signedjson(server):
    key_id, _, old = verified_keys(server)
    assert key_id.startswith("ed25519:a_")
    assert old == {}


def test_concurrent_first_use_yields_one_key(tmp_path):
    with Homeserver(tmp_path / "state") as hs:
        with ThreadPoolExecutor(8) as pool:
            docs = list(pool.map(lambda _: hs.get("/_matrix/key/v2/server").json()["verify_keys"], range(16)))
        assert len({str(d) for d in docs}) == 1


def test_generated_key_survives_restarts_and_retires_when_a_secret_is_set(tmp_path):
    state = tmp_path / "state"
    port_env = {}
    with Homeserver(state) as hs:
        generated = verified_keys(hs)
        port_env["SERVER_NAME"] = hs.server_name
    with Homeserver(state, env=port_env) as hs:
        assert verified_keys(hs) == generated, "a restart must not change the key"

    secret_key = generate_signing_key("a_AbCd")
    key_file = f"ed25519 a_AbCd {encode_signing_key_base64(secret_key)}"
    before = int(time.time() * 1000)
    with Homeserver(state, env={**port_env, "SIGNING_KEY": key_file}) as hs:
        key_id, public, old = verified_keys(hs)
        assert key_id == "ed25519:a_AbCd"
        assert public == encode_verify_key_base64(get_verify_key(secret_key))
        # The generated key is now published as retired, with when it stopped being used.
        assert list(old) == [generated[0]]
        assert old[generated[0]]["key"] == generated[1]
        assert before <= old[generated[0]]["expired_ts"] <= int(time.time() * 1000)


def test_malformed_signing_key_secret_is_a_clear_error(tmp_path):
    with Homeserver(tmp_path / "state", env={"SIGNING_KEY": "ed25519 a_AbCd not-base64!"}) as hs:
        response = hs.get("/_matrix/key/v2/server")
        assert response.status_code == 500
        body = response.json()
        assert body["errcode"] == "M_UNKNOWN"
        assert "SIGNING_KEY" in body["error"] and "not-base64" not in body["error"]
        # Endpoints that need no key keep working.
        assert hs.get("/.well-known/matrix/client").status_code == 200


def test_exported_key_is_the_served_key_and_imports_back(tmp_path):
    state = tmp_path / "state"
    with Homeserver(state) as hs:
        key_id, public, _ = verified_keys(hs)
        name = hs.server_name
    exported = subprocess.run(["make", "--no-print-directory", "export-signing-key"], cwd=ROOT,
                              env={**os.environ, "LOCAL_STATE": str(state)},
                              capture_output=True, text=True, check=True).stdout.strip()
    algorithm, version, seed = exported.split(" ")
    assert f"{algorithm}:{version}" == key_id
    assert encode_verify_key_base64(get_verify_key(decode_signing_key_base64(algorithm, version, seed))) == public
    # The exported line, set as the secret on a fresh database, is the same identity.
    with Homeserver(tmp_path / "fresh", env={"SIGNING_KEY": exported, "SERVER_NAME": name}) as hs:
        assert verified_keys(hs)[:2] == (key_id, public)
