"""Media across servers with a real Synapse (1.163 from PyPI), over TLS from the test CA.

A Synapse user downloads what our user uploaded (Synapse fetches it from us with
`/_matrix/federation/v1/media/download`, signed), and our user downloads what the Synapse user
uploaded (we fetch it the same way and cache it in R2). The second download of the remote file
is shown to come from our cache by stopping Synapse before it: it still succeeds, byte-equal.
"""

from __future__ import annotations

import io
import secrets

from PIL import Image

from test_media import auth, mxc_path, png_bytes, register


def test_media_crosses_both_ways_and_remote_media_is_cached(federation_pair):
    ours, synapse = federation_pair.ours, federation_pair.synapse
    alice = register(ours, "alice")
    bob_id, bob_token = synapse.register("bob")
    bob = {"Authorization": f"Bearer {bob_token}"}

    # Ours -> Synapse.
    ours_image = png_bytes(300, 200)
    uploaded = ours.request("POST", "/_matrix/media/v3/upload", params={"filename": "ours.png"},
                            data=ours_image, headers={**auth(alice), "Content-Type": "image/png"})
    assert uploaded.status_code == 200, uploaded.text
    mxc = uploaded.json()["content_uri"]
    assert mxc.startswith(f"mxc://{federation_pair.our_name}/")
    seen = synapse.client("GET", f"/_matrix/client/v1/media/download/{mxc_path(mxc)}", headers=bob)
    assert seen.status_code == 200, seen.text
    assert seen.content == ours_image
    assert seen.headers["Content-Type"] == "image/png"
    thumb = synapse.client("GET", f"/_matrix/client/v1/media/thumbnail/{mxc_path(mxc)}",
                           params={"width": 32, "height": 32, "method": "crop"}, headers=bob)
    assert thumb.status_code == 200, thumb.text
    assert Image.open(io.BytesIO(thumb.content)).size == (32, 32)

    # Synapse -> ours.
    theirs = secrets.token_bytes(150_000)
    uploaded = synapse.client("POST", "/_matrix/media/v3/upload", params={"filename": "theirs.bin"},
                              data=theirs, headers={**bob, "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200, uploaded.text
    remote_mxc = uploaded.json()["content_uri"]
    path = f"/_matrix/client/v1/media/download/{mxc_path(remote_mxc)}"
    first = ours.get(path, headers=auth(alice), timeout=60)
    assert first.status_code == 200, first.text
    assert first.content == theirs
    assert first.headers["Content-Type"] == "application/octet-stream"
    assert "theirs.bin" in first.headers["Content-Disposition"]

    # With Synapse down, the second download can only come from our cache.
    synapse.stop()
    try:
        second = ours.get(path, headers=auth(alice), timeout=60)
        assert second.status_code == 200, second.text
        assert second.content == theirs
        # Something never fetched cannot be served while Synapse is down: a clean 502, no hang.
        missing = ours.get(f"/_matrix/client/v1/media/download/{synapse.server_name}/neverUploaded1",
                           headers=auth(alice), timeout=60)
        assert missing.status_code == 502, missing.text
    finally:
        synapse.start()
    # A remote thumbnail: Synapse's own, fetched over federation.
    picture = png_bytes(400, 400)
    uploaded = synapse.client("POST", "/_matrix/media/v3/upload", data=picture,
                              headers={**bob, "Content-Type": "image/png"})
    remote_pic = uploaded.json()["content_uri"]
    thumb = ours.get(f"/_matrix/client/v1/media/thumbnail/{mxc_path(remote_pic)}",
                     params={"width": 96, "height": 96, "method": "crop"}, headers=auth(alice), timeout=60)
    assert thumb.status_code == 200, thumb.text
    assert Image.open(io.BytesIO(thumb.content)).size == (96, 96)
