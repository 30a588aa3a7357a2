"""The content repository against the real Worker: bytes in R2 (local), rows in D1, real clients.

matrix-nio and matrix-js-sdk (tests/clients/js/media.mjs) upload an image and a file and
download them through the authenticated endpoints; thumbnails are decoded with Pillow and
measured; async uploads, the size limit, the freeze of the deprecated unauthenticated
endpoints, ranges and URL previews (of a page served here on loopback) are plain HTTP.
The federation side (a Synapse user and ours exchanging media) is test_media_federation.py.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import secrets
import subprocess
import threading
from pathlib import Path

import pytest
import requests
from PIL import Image

from harness import ROOT, Homeserver
from test_js_sdk import NODE_MIN_MAJOR, find_node, node_major

MAX_UPLOAD = 8 * 1024 * 1024
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def media_server(tmp_path_factory):
    """An instance with a small upload limit and URL previews on (allowed to reach loopback,
    where the test's pages are served)."""
    env = {"MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "URL_PREVIEWS": "true", "URL_PREVIEW_ALLOW_PRIVATE": "true"}
    with Homeserver(tmp_path_factory.mktemp("media") / "state", env=env) as hs:
        yield hs


def register(server, name: str = "user") -> dict:
    localpart = f"{name}-{secrets.token_hex(4)}"
    body = {"username": localpart, "password": PASSWORD}
    first = server.request("POST", "/_matrix/client/v3/register", json=body)
    assert first.status_code == 401, first.text
    body["auth"] = {"type": "m.login.dummy", "session": first.json()["session"]}
    answer = server.request("POST", "/_matrix/client/v3/register", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def auth(user: dict) -> dict:
    return {"Authorization": f"Bearer {user['access_token']}"}


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    image = Image.new(mode, (width, height))
    for x in range(0, width, max(1, width // 16)):
        for y in range(0, height, max(1, height // 16)):
            image.putpixel((x, y), (x % 256, y % 256, 90, 255) if mode == "RGBA" else (x % 256, y % 256, 90))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def upload(server, user: dict, data: bytes, content_type: str, filename: str | None = None) -> str:
    params = {"filename": filename} if filename else {}
    answer = server.request("POST", "/_matrix/media/v3/upload", params=params, data=data,
                            headers={**auth(user), "Content-Type": content_type}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["content_uri"]


def mxc_path(mxc: str) -> str:
    return mxc.removeprefix("mxc://")


# -- matrix-nio ------------------------------------------------------------------------------------

def test_matrix_nio_uploads_and_another_user_downloads_byte_equal(media_server):
    from nio import AsyncClient, DownloadResponse, ThumbnailResponse, UploadResponse

    alice, bob = register(media_server, "alice"), register(media_server, "bob")
    image = png_bytes(640, 400)
    document = "a plain file, with ünïcode\n".encode() * 50

    async def scenario():
        uploader = AsyncClient(media_server.base_url, alice["user_id"])
        uploader.access_token, uploader.device_id = alice["access_token"], alice["device_id"]
        viewer = AsyncClient(media_server.base_url, bob["user_id"])
        viewer.access_token, viewer.device_id = bob["access_token"], bob["device_id"]
        try:
            uploaded = {}
            for name, data, content_type in (("photo.png", image, "image/png"),
                                             ("notes.txt", document, "text/plain")):
                response, _ = await uploader.upload(io.BytesIO(data), content_type=content_type,
                                                    filename=name, filesize=len(data))
                assert isinstance(response, UploadResponse), response
                uploaded[name] = response.content_uri
            downloads = {name: await viewer.download(mxc) for name, mxc in uploaded.items()}
            server_name, media_id = mxc_path(uploaded["photo.png"]).split("/")
            thumb = await viewer.thumbnail(server_name, media_id, 32, 32)
            return downloads, thumb
        finally:
            await uploader.close()
            await viewer.close()

    downloads, thumb = asyncio.run(scenario())
    photo, notes = downloads["photo.png"], downloads["notes.txt"]
    assert isinstance(photo, DownloadResponse), photo
    assert (photo.body, photo.content_type, photo.filename) == (image, "image/png", "photo.png")
    assert isinstance(notes, DownloadResponse), notes
    assert (notes.body, notes.content_type, notes.filename) == (document, "text/plain", "notes.txt")
    assert isinstance(thumb, ThumbnailResponse), thumb
    # 32x32 "scale" maps to the spec's 320x240 size: the 640x400 picture fits it, aspect kept.
    assert Image.open(io.BytesIO(thumb.body)).size == (320, 200)


# -- matrix-js-sdk ---------------------------------------------------------------------------------

def test_matrix_js_sdk_uploads_downloads_and_thumbnails(media_server, tmp_path):
    node = find_node()
    assert node_major(node) >= NODE_MIN_MAJOR, f"{node} is missing or older than Node {NODE_MIN_MAJOR}"
    alice, bob = register(media_server, "alice"), register(media_server, "bob")
    image, document = tmp_path / "picture.jpg", tmp_path / "report.pdf"
    image.write_bytes(jpeg_bytes(1200, 900))
    document.write_bytes(b"%PDF-1.4\n" + os.urandom(200_000))
    config = {"baseUrl": media_server.base_url, "uploader": alice, "viewer": bob,
              "files": [{"path": str(image), "type": "image/jpeg"},
                        {"path": str(document), "type": "application/pdf"}]}
    result = subprocess.run([node, str(ROOT / "tests/clients/js/media.mjs"), json.dumps(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{media_server.log()}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for file, got in zip(config["files"], report["files"]):
        data = Path(file["path"]).read_bytes()
        assert got["sha256"] == __import__("hashlib").sha256(data).hexdigest(), got
        assert got["contentType"] == file["type"]
        assert Path(file["path"]).name in got["disposition"]
    # The PDF is not safe inline: an attachment. The JPEG is.
    assert report["files"][0]["disposition"].startswith("inline")
    assert report["files"][1]["disposition"].startswith("attachment")
    thumb = Image.open(io.BytesIO(bytes.fromhex(report["thumbnail"]["hex"])))
    assert report["thumbnail"]["contentType"] == "image/jpeg"
    assert thumb.size == (96, 96)  # 64x64 crop -> the spec's 96x96 crop size
    assert report["unauthenticatedStatus"] == 401


# -- plain HTTP ------------------------------------------------------------------------------------

def test_async_upload_waits_fills_once_and_downloads(media_server):
    alice, bob = register(media_server, "alice"), register(media_server, "bob")
    created = media_server.request("POST", "/_matrix/media/v1/create", headers=auth(alice))
    assert created.status_code == 200, created.text
    mxc = created.json()["content_uri"]
    assert created.json()["unused_expires_at"] > 0
    download = f"/_matrix/client/v1/media/download/{mxc_path(mxc)}"

    early = media_server.get(download + "?timeout_ms=0", headers=auth(bob))
    assert (early.status_code, early.json()["errcode"]) == (504, "M_NOT_YET_UPLOADED")

    # A download that waits is answered once the bytes arrive.
    waited: dict = {}

    def wait_for_it():
        waited["response"] = media_server.get(download + "?timeout_ms=15000", headers=auth(bob), timeout=30)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    put = f"/_matrix/media/v3/upload/{mxc_path(mxc)}"
    data = png_bytes(64, 64)
    other = media_server.request("PUT", put, data=data, headers={**auth(bob), "Content-Type": "image/png"})
    assert (other.status_code, other.json()["errcode"]) == (403, "M_FORBIDDEN")
    filled = media_server.request("PUT", put + "?filename=late.png", data=data,
                                  headers={**auth(alice), "Content-Type": "image/png"})
    assert filled.status_code == 200, filled.text
    again = media_server.request("PUT", put, data=data, headers={**auth(alice), "Content-Type": "image/png"})
    assert (again.status_code, again.json()["errcode"]) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    waiter.join(30)
    assert waited["response"].status_code == 200 and waited["response"].content == data
    assert waited["response"].headers["Content-Type"] == "image/png"


def test_size_limit_is_advertised_and_enforced(media_server):
    alice = register(media_server, "alice")
    config = media_server.get("/_matrix/client/v1/media/config", headers=auth(alice))
    assert config.json() == {"m.upload.size": MAX_UPLOAD}
    big = media_server.request("POST", "/_matrix/media/v3/upload", data=b"\0" * (MAX_UPLOAD + 1),
                               headers={**auth(alice), "Content-Type": "application/octet-stream"}, timeout=60)
    assert (big.status_code, big.json()["errcode"]) == (413, "M_TOO_LARGE")
    # Just under the limit goes through the streaming path whole.
    data = os.urandom(MAX_UPLOAD - 10)
    mxc = upload(media_server, alice, data, "application/octet-stream", "blob.bin")
    back = media_server.get(f"/_matrix/client/v1/media/download/{mxc_path(mxc)}", headers=auth(alice), timeout=60)
    assert back.status_code == 200 and back.content == data
    assert back.headers["Content-Disposition"] == 'attachment; filename="blob.bin"'


def test_new_media_is_frozen_on_the_unauthenticated_endpoints(media_server):
    alice = register(media_server, "alice")
    mxc = upload(media_server, alice, png_bytes(10, 10), "image/png", "x.png")
    assert media_server.get(f"/_matrix/client/v1/media/download/{mxc_path(mxc)}").status_code == 401
    legacy = media_server.get(f"/_matrix/media/v3/download/{mxc_path(mxc)}")
    assert (legacy.status_code, legacy.json()["errcode"]) == (404, "M_NOT_FOUND")
    legacy_thumb = media_server.get(f"/_matrix/media/v3/thumbnail/{mxc_path(mxc)}?width=32&height=32")
    assert legacy_thumb.status_code == 404


def test_ranges_and_headers_of_a_download(media_server):
    alice = register(media_server, "alice")
    data = bytes(range(256)) * 40
    mxc = upload(media_server, alice, data, "text/html", "page.html")
    url = f"/_matrix/client/v1/media/download/{mxc_path(mxc)}"
    part = media_server.get(url, headers={**auth(alice), "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    whole = media_server.get(url, headers=auth(alice))
    assert whole.headers["Content-Disposition"] == 'attachment; filename="page.html"'
    assert whole.headers["Content-Security-Policy"].startswith("sandbox;")
    assert whole.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    renamed = media_server.get(url + "/other%20name.html", headers=auth(alice))
    assert renamed.headers["Content-Disposition"] == 'attachment; filename="other name.html"'
    assert media_server.get(url, headers={**auth(alice), "Range": f"bytes={len(data)}-"}).status_code == 416


def test_thumbnails_of_jpeg_png_and_gif_have_the_requested_bounds(media_server):
    alice = register(media_server, "alice")
    gif = io.BytesIO()
    Image.new("P", (300, 300)).save(gif, format="GIF")
    for data, content_type in ((jpeg_bytes(1000, 800), "image/jpeg"), (png_bytes(500, 1000), "image/png"),
                               (gif.getvalue(), "image/gif")):
        mxc = upload(media_server, alice, data, content_type)
        for query, bounds in (("width=32&height=32&method=crop", (32, 32)),
                              ("width=96&height=96&method=crop", (96, 96)),
                              ("width=320&height=240&method=scale", None)):
            answer = media_server.get(f"/_matrix/client/v1/media/thumbnail/{mxc_path(mxc)}?{query}",
                                      headers=auth(alice))
            assert answer.status_code == 200, (content_type, query, answer.text)
            assert answer.headers["Content-Disposition"].startswith("inline")
            size = Image.open(io.BytesIO(answer.content)).size
            if bounds:
                assert size == bounds, (content_type, query, size)
            else:
                # scale: fits 320x240, touches one side, never upscaled.
                assert size[0] <= 320 and size[1] <= 240 and (size[0] == 320 or size[1] == 240), size
    # Not an image: the spec's 400.
    mxc = upload(media_server, alice, b"just text", "text/plain")
    answer = media_server.get(f"/_matrix/client/v1/media/thumbnail/{mxc_path(mxc)}?width=32&height=32",
                              headers=auth(alice))
    assert answer.status_code == 400


class _Pages(http.server.BaseHTTPRequestHandler):
    image = png_bytes(279, 129)

    def do_GET(self):  # noqa: N802 (the standard library's name)
        port = self.server.server_address[1]
        if self.path == "/page.html":
            body = (f'<html><head><title>Fallback</title><meta property="og:title" content="The Rock" />'
                    f'<meta property="og:type" content="video.movie" />'
                    f'<meta property="og:image" content="/pic.png" /></head></html>').encode()
            self._send(200, "text/html", body)
        elif self.path == "/pic.png":
            self._send(200, "image/png", self.image)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/page.html")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_url_preview_reads_open_graph_and_keeps_the_image_as_media(media_server):
    alice = register(media_server, "alice")
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{pages.server_address[1]}/moved"
        answer = media_server.get("/_matrix/client/v1/media/preview_url", params={"url": url},
                                  headers=auth(alice), timeout=30)
        assert answer.status_code == 200, answer.text
        og = answer.json()
        assert og["og:title"] == "The Rock" and og["og:type"] == "video.movie"
        assert og["og:image"].startswith("mxc://")
        assert (og["og:image:width"], og["og:image:height"]) == (279, 129)
        assert og["matrix:image:size"] == len(_Pages.image)
        image = media_server.get(f"/_matrix/client/v1/media/download/{mxc_path(og['og:image'])}",
                                 headers=auth(alice))
        assert image.content == _Pages.image
        refused = media_server.get("/_matrix/client/v1/media/preview_url",
                                   params={"url": "file:///etc/passwd"}, headers=auth(alice))
        assert refused.status_code == 403
    finally:
        pages.shutdown()
        pages.server_close()


def test_url_previews_are_off_unless_enabled(server):
    user = register(server, "carol")
    answer = server.get("/_matrix/client/v1/media/preview_url", params={"url": "https://example.org/"},
                        headers=auth(user))
    assert (answer.status_code, answer.json()["errcode"]) == (404, "M_UNRECOGNIZED")
