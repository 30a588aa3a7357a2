"""Screenshots of the OAuth pages at phone width (390x844) in headless Chromium (Debian's
`chromium` package): login, registration and account management, written to docs/oauth/.
`make oauth-screenshots`; not part of `make test`.

A local instance is started with the test harness (and stopped at the end). Login and
registration are loaded from it as a browser would; the account page needs the signed-in
cookie, so its exact HTML, fetched with that cookie, is saved and loaded from a file (the page
has no external assets, so it renders the same).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import Homeserver  # noqa: E402

OUT = ROOT / "docs" / "oauth"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=390,844"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    sys.exit("chromium is not installed (Debian: apt-get install chromium)")


def shoot(browser: str, url: str, out: Path, profile: Path) -> None:
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}", url],
                   check=True, capture_output=True, timeout=60)
    print(f"wrote {out.relative_to(ROOT)}")


def csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def main() -> None:
    browser = chromium()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Homeserver(tmp / "state", env={"SERVER_NAME": "example.org"}) as hs:
            shoot(browser, hs.base_url + "/oauth2/login", OUT / "login.png", tmp / "profile")
            shoot(browser, hs.base_url + "/oauth2/register", OUT / "register.png", tmp / "profile")
            # A person with two sessions: one from a password login, one named by an app.
            session = requests.Session()
            page = session.get(hs.base_url + "/oauth2/register", timeout=10).text
            session.post(hs.base_url + "/oauth2/register", timeout=10, allow_redirects=False, data={
                "csrf": csrf(page), "username": "alice", "password": "correct horse battery",
                "password2": "correct horse battery"})
            for name in ("Element X on Pixel 8", "matrix-edge laptop"):
                r = requests.post(hs.base_url + "/_matrix/client/v3/login", timeout=10, json={
                    "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                    "password": "correct horse battery", "initial_device_display_name": name})
                r.raise_for_status()
            account = session.get(hs.base_url + "/account", timeout=10)
            account.raise_for_status()
            saved = tmp / "account.html"
            saved.write_text(account.text)
            shoot(browser, saved.as_uri(), OUT / "account.png", tmp / "profile")


if __name__ == "__main__":
    main()
