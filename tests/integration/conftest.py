import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import Homeserver  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One instance shared by the read-only tests: default settings, a support contact."""
    hs = Homeserver(tmp_path_factory.mktemp("shared") / "state",
                    env={"SUPPORT_EMAIL": "admin@example.org", "SUPPORT_MXID": "@admin:example.org"})
    with hs:
        yield hs


@pytest.fixture(scope="session")
def federation_pair(tmp_path_factory):
    """Our Worker over HTTPS and a real Synapse, federating with each other over TLS from one
    test CA (tests/integration/synapse_peer.py). Shared by the session: tests use fresh users and
    rooms. A test may stop and restart `pair.ours` or `pair.synapse` (same port, state and key) but
    must leave both running."""
    from synapse_peer import federation_pair as start_pair
    # Two events per step: every join of a Synapse room then takes several steps of the
    # resumable join (src/rooms/join_job.rs), as only a big room would with the default.
    with start_pair(tmp_path_factory.mktemp("federation"), our_env={"JOIN_STEP_EVENTS": "2"}) as pair:
        yield pair
