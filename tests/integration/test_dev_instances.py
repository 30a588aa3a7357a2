"""`make dev` as a user runs it: side by side, over TLS, and stopped cleanly by a signal."""

import os
import signal
import time

import pytest

from harness import Homeserver, make_test_ca, port_open, processes_mentioning


def test_two_instances_side_by_side_one_over_https_with_a_test_ca(tmp_path):
    ca, cert, key = make_test_ca(tmp_path / "tls")
    plain = Homeserver(tmp_path / "plain")
    secure = Homeserver(tmp_path / "secure", tls=(cert, key), ca=ca)
    with plain, secure:
        assert plain.get("/.well-known/matrix/client").json() == {
            "m.homeserver": {"base_url": f"http://localhost:{plain.port}"}}
        # Verified against the test CA, not with verification turned off.
        assert secure.get("/.well-known/matrix/client").json() == {
            "m.homeserver": {"base_url": f"https://localhost:{secure.port}"}}
        plain_keys = plain.get("/_matrix/key/v2/server").json()
        secure_keys = secure.get("/_matrix/key/v2/server").json()
        assert plain_keys["server_name"] == f"localhost:{plain.port}"
        assert secure_keys["server_name"] == f"localhost:{secure.port}"
        assert plain_keys["verify_keys"] != secure_keys["verify_keys"]


def test_public_baseurl_without_port_means_443_for_federation(tmp_path):
    env = {"SERVER_NAME": "example.org", "PUBLIC_BASEURL": "https://matrix.example.org"}
    with Homeserver(tmp_path / "state", env=env) as hs:
        assert hs.get("/.well-known/matrix/server").json() == {"m.server": "matrix.example.org:443"}
        assert hs.get("/.well-known/matrix/client").json() == {
            "m.homeserver": {"base_url": "https://matrix.example.org"}}
        # No contact configured: the support file is honestly absent.
        response = hs.get("/.well-known/matrix/support")
        assert response.status_code == 404 and response.json()["errcode"] == "M_NOT_FOUND"


@pytest.mark.parametrize("how", ["kill make", "ctrl-c"])
def test_a_signal_to_make_dev_stops_every_process_it_started(tmp_path, how):
    hs = Homeserver(tmp_path / "state", command=["make", "--no-print-directory", "dev"])
    hs.start()
    try:
        started = processes_mentioning(str(hs.state_dir))
        assert len(started) >= 2, f"the server (node) and workerd should be running: {started}"
        if how == "kill make":
            hs.process.send_signal(signal.SIGTERM)
        else:
            # A terminal's Ctrl-C reaches the whole foreground process group.
            os.killpg(hs.process.pid, signal.SIGINT)
        hs.process.wait(timeout=20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (processes_mentioning(str(hs.state_dir)) or port_open(hs.port)):
            time.sleep(0.2)
        assert processes_mentioning(str(hs.state_dir)) == []
        assert not port_open(hs.port)
    finally:
        hs.stop()


def _register(hs: Homeserver, localpart: str) -> dict:
    body = {"username": localpart, "password": "a restart does not forget me"}
    session = hs.request("POST", "/_matrix/client/v3/register", json=body).json()["session"]
    body["auth"] = {"type": "m.login.dummy", "session": session}
    response = hs.request("POST", "/_matrix/client/v3/register", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_restart_keeps_the_data_and_applies_no_migration_again(tmp_path):
    first, second = Homeserver(tmp_path / "one"), Homeserver(tmp_path / "two")
    with first:
        user = _register(first, "restarted")
    # The first start left a migrated template (or found one): a second fresh state copies it.
    with second:
        assert second.get("/_matrix/client/versions").status_code == 200
    first.start()
    try:
        # The restart reused the state: the account is still there.
        response = first.get("/_matrix/client/v3/account/whoami",
                             headers={"Authorization": f"Bearer {user['access_token']}"})
        assert response.status_code == 200 and response.json()["user_id"] == user["user_id"]
    finally:
        first.stop()
    assert first.log_path.read_text().count("applying D1 migrations") <= 1, "not again on restart"
    assert "applying D1 migrations" not in second.log_path.read_text()
