"""The DNS-over-HTTPS stub answers like the resolvers the Worker's discovery parses."""

import shutil
import subprocess

import pytest
import requests

from doh_stub import DohStub

HEADERS = {"accept": "application/dns-json"}


def ask(stub: DohStub, name: str, qtype: str = "SRV", **kwargs) -> dict:
    response = requests.get(stub.url, params={"name": name, "type": qtype},
                            headers=HEADERS, timeout=5, **kwargs)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dns-json"
    return response.json()


def test_srv_answer_in_the_json_api_shape():
    records = {"_matrix-fed._tcp.hs1.test": ["10 5 8448 localhost.", "20 0 8449 other.test."]}
    with DohStub(records, ttl=120) as stub:
        body = ask(stub, "_matrix-fed._tcp.HS1.test.")
        assert stub.queries == [("_matrix-fed._tcp.HS1.test.", "SRV")]
    assert body["Status"] == 0
    assert [(a["type"], a["TTL"], a["data"]) for a in body["Answer"]] == [
        (33, 120, "10 5 8448 localhost."),
        (33, 120, "20 0 8449 other.test."),
    ]


def test_unknown_names_are_nxdomain_with_an_soa():
    with DohStub({}) as stub:
        body = ask(stub, "_matrix._tcp.nowhere.test")
    assert body["Status"] == 3
    assert "Answer" not in body
    assert body["Authority"][0]["type"] == 6


def test_servfail_on_request():
    with DohStub({"_matrix-fed._tcp.broken.test": DohStub.SERVFAIL}) as stub:
        assert ask(stub, "_matrix-fed._tcp.broken.test")["Status"] == 2


def test_bad_queries_are_refused():
    with DohStub({}) as stub:
        assert requests.get(stub.url, timeout=5).status_code == 400


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a test cert")
def test_https_with_a_test_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with DohStub({"_matrix-fed._tcp.tls.test": ["1 1 443 a.test."]},
                 certfile=str(cert), keyfile=str(key)) as stub:
        assert stub.url.startswith("https://")
        body = ask(stub, "_matrix-fed._tcp.tls.test", verify=str(cert))
    assert body["Answer"][0]["data"] == "1 1 443 a.test."
