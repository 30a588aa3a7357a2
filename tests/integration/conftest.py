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
