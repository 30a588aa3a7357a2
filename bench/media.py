"""`make bench`'s media rows: uploads, downloads and thumbnails on our Worker (behind
bench/meter.mjs, which also counts R2 operations) and on Synapse, side by side, with latency,
the server processes' CPU, and our platform cost per operation (D1 queries and rows, R2 class A
and class B operations).

  python bench/media.py [--quick]     prints the section; without --quick also writes it into
                                      docs/benchmarks.md (run.py adds it to the whole report)

A picture's first thumbnail is timed with the picture's upload: Synapse makes its thumbnails in
the upload request, we make one at its first request, so only the two together compare like
with like. "thumbnail again" asks for one already made.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from client import Client  # noqa: E402
import report  # noqa: E402
from servers import Ours, Synapse, cpu_seconds, remove_workdir  # noqa: E402

MARK = "<!-- media rows (bench/media.py) -->"


def photo(width: int, height: int, fmt: str) -> bytes:
    """A picture with detail everywhere (a flat colour would decode unrealistically fast)."""
    noise = Image.effect_noise((width, height), 64).convert("L")
    image = Image.merge("RGB", (noise, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                Image.linear_gradient("L").resize((width, height))))
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return out.getvalue()


# The client's connection to the server measured: one keep-alive connection, as the other rows of
# `make bench` use (and as real clients do); `measure` opens a fresh one per server.
HTTP = requests.Session()


def upload(base: str, token: str, data: bytes, content_type: str) -> str:
    answer = HTTP.post(f"{base}/_matrix/media/v3/upload", data=data, timeout=300,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    answer.raise_for_status()
    return answer.json()["content_uri"].removeprefix("mxc://")


def get(base: str, token: str, path: str) -> int:
    answer = HTTP.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=300)
    answer.raise_for_status()
    return len(answer.content)


def operations(quick: bool) -> list[tuple[str, int, object]]:
    """(label, repetitions, op) in order: op is run(base, token, state); `state` carries the
    uploads."""
    mb1, mb50 = os.urandom(1024 * 1024), os.urandom((5 if quick else 50) * 1024 * 1024)
    jpeg12, png4 = photo(4000, 3000, "JPEG"), photo(2000, 2000, "PNG")
    thumb = "/_matrix/client/v1/media/thumbnail/{}?width=320&height=240&method=scale"
    big = "5 MB" if quick else "50 MB"

    def up(key, data, ctype):
        return lambda b, t, s: s.setdefault(key, []).append(upload(b, t, data, ctype))

    def down(key):
        return lambda b, t, s: get(b, t, f"/_matrix/client/v1/media/download/{s[key][-1]}")

    def sent_and_shown(data, ctype):
        # What a picture sent to a room costs before its receivers see it: the sender's upload,
        # then the first thumbnail request.
        return lambda b, t, s: get(b, t, thumb.format(upload(b, t, data, ctype)))

    return [
        ("upload 1 MB", 3 if quick else 10, up("mb1", mb1, "application/octet-stream")),
        ("download 1 MB", 3 if quick else 30, down("mb1")),
        (f"upload {big}", 1 if quick else 2, up("mb50", mb50, "application/octet-stream")),
        (f"download {big}", 1 if quick else 2, down("mb50")),
        ("12 MP JPEG: upload, then its first thumbnail", 1 if quick else 3, sent_and_shown(jpeg12, "image/jpeg")),
        ("4 MP PNG: upload, then its first thumbnail", 1 if quick else 3, sent_and_shown(png4, "image/png")),
        # A few milliseconds each: enough repetitions for a median that holds on a busy machine.
        ("thumbnail again (made before)", 10 if quick else 60,
         lambda b, t, s: get(b, t, thumb.format(s["again"]))),
    ]


def measure(workdir: Path, quick: bool = False, log=print) -> dict:
    """{label: {"ours": {...}, "synapse": {...}}} with median ms, CPU ms and (ours) the meter."""
    results: dict = {}
    # A folder of its own: under run.py the earlier passes' state is in workdir.
    workdir = workdir / "media"
    workdir.mkdir(parents=True, exist_ok=True)
    # The payloads are made once (a 12 MP noise picture and 50 MB of random bytes take a while).
    ops = operations(quick)
    for server in (Ours(workdir, entry="bench/meter.mjs"), Synapse(workdir)):
        log(f"media: {server.name}")
        global HTTP
        HTTP = requests.Session()
        server.start()
        try:
            base = server.base_url
            token = Client(base, Counter()).register(f"media{int(time.time())}").token
            meter = (lambda: requests.get(base + "/_bench/meter", timeout=10).json()) if server.name == "ours" else dict
            state: dict = {}
            # One picture made once, for "again".
            state["again"] = upload(base, token, photo(1600, 1200, "JPEG"), "image/jpeg")
            get(base, token, "/_matrix/client/v1/media/thumbnail/" + state["again"] + "?width=320&height=240&method=scale")
            for label, n, op in ops:
                times, cpu_ms = [], 0.0
                meter()
                for _ in range(n):
                    cpu0, t0 = cpu_seconds(server.pids()), time.perf_counter()
                    op(base, token, state)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu_ms += (cpu_seconds(server.pids()) - cpu0) * 1000
                counts = meter()
                row = {"ms": statistics.median(times), "cpu_ms": cpu_ms / n, "n": n}
                if server.name == "ours":
                    row.update({k: counts[k] / n for k in ("d1_queries", "rows_read", "rows_written",
                                                           "r2_class_a", "r2_class_b")})
                results.setdefault(label, {})[server.name] = row
            if server.name == "ours":
                results["r2 floor"] = r2_floor(base, token, quick)
        finally:
            server.stop()
    return results


def r2_floor(base: str, token: str, quick: bool) -> dict:
    """Median ms of the same uploads' and downloads' bytes put into and read from local R2 by
    plain JavaScript in the same workerd (bench/meter.mjs), alternately alone ("r2") and with
    what any Worker must also do for the request ("least": the token's D1 read, and for an
    upload the media row's D1 write): what this runtime costs them before any of our code runs."""
    requests.post(base + "/_bench/r2-setup", timeout=10).raise_for_status()
    auth = {"Authorization": f"Bearer {token}"}
    floor: dict = {"r2": {}, "least": {}}
    for size, puts, gets in ((1, 3 if quick else 10, 3 if quick else 30),
                             (5 if quick else 50, 1 if quick else 2, 1 if quick else 2)):
        data = os.urandom(size * 1024 * 1024)
        times: dict = {}
        for kind, headers in (("r2", {}), ("least", auth)) * puts:
            t0 = time.perf_counter()
            answer = HTTP.put(base + "/_bench/r2/", data=data, headers=headers, timeout=300)
            times.setdefault((kind, "upload"), []).append((time.perf_counter() - t0) * 1000)
            answer.raise_for_status()
            times[kind] = answer.json()["key"]
        for kind, headers in (("r2", {}), ("least", auth)) * gets:
            t0 = time.perf_counter()
            got = HTTP.get(base + "/_bench/r2/" + times[kind], headers=headers, timeout=300)
            times.setdefault((kind, "download"), []).append((time.perf_counter() - t0) * 1000)
            assert got.status_code == 200 and got.content == data, got.status_code
        for kind in ("r2", "least"):
            for op in ("upload", "download"):
                floor[kind][f"{op} {size} MB"] = statistics.median(times[(kind, op)])
    return floor


def section(results: dict) -> list[str]:
    out = [MARK, "## Media", "",
           "`bench/media.py`: each server alone on the machine, our Worker behind `bench/meter.mjs` (which also"
           " counts R2 operations: class A = put/delete/list, class B = get/head). Median latency of the client's"
           " request over one keep-alive connection (as in the main table); CPU is the server processes' CPU"
           " time per request (workerd for us, so it includes the"
           " runtime's own copying of streamed bytes, which the platform does not bill as Worker CPU).",
           "",
           "| operation | ours ms | Synapse ms | ratio | ours CPU ms | Synapse CPU ms | D1 queries | rows read |"
           " rows written | R2 A | R2 B |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    floor = results.get("r2 floor", {})
    for label, row in results.items():
        if label == "r2 floor":
            continue
        ours, syn = row.get("ours"), row.get("synapse")
        if not ours or not syn:
            continue
        out.append(f"| {label} | {ours['ms']:.1f} | {syn['ms']:.1f} | {ours['ms'] / syn['ms']:.2f} |"
                   f" {ours['cpu_ms']:.1f} | {syn['cpu_ms']:.1f} | {ours['d1_queries']:.1f} |"
                   f" {ours['rows_read']:.1f} | {ours['rows_written']:.1f} | {ours['r2_class_a']:.1f} |"
                   f" {ours['r2_class_b']:.1f} |")
    if floor.get("least"):
        out += ["",
                "What this runtime costs those bytes before any of our code runs (`/_bench/r2/` in"
                " bench/meter.mjs, plain JavaScript in the same workerd, timed in the same run): the bytes into"
                " or out of local R2 (Miniflare's simulation) alone, and with what any Worker must also do for"
                " the request: read the access token's row (one D1 statement) and, for an upload, write the"
                " media's row (one more). When that least cost is above Synapse's whole request, no Worker code"
                " can bring the row to 1.0 on this machine; on the platform R2 and D1 are separate services.",
                "",
                "| operation | ours ms | local R2 alone ms | least any Worker does ms | Synapse ms |"
                " least / Synapse |",
                "|---|---:|---:|---:|---:|---:|"]
        for label, least in floor["least"].items():
            row = results.get(label, {})
            if "ours" in row and "synapse" in row:
                out.append(f"| {label} | {row['ours']['ms']:.1f} | {floor['r2'][label]:.1f} | {least:.1f} |"
                           f" {row['synapse']['ms']:.1f} | {least / row['synapse']['ms']:.2f} |")
    out += ["",
            "Reading it:", "",
            "- Synapse makes its thumbnails (five sizes by default) in the upload request; we make a thumbnail at"
            " its first request, in the size asked for, and store it, and our uploads do no image work. So a"
            " picture's upload and its first thumbnail are timed together, as one row: what a picture sent to a"
            " room costs before its receivers see it. \"thumbnail again\" serves a stored one on both.",
            "- The image work itself, wasm in V8 against native, is in the hot-path section (`thumbnail_jpeg_12mp`,"
            " `thumbnail_png_4mp`): it is what decides whether a thumbnail fits a request's CPU limit (10 ms on the"
            " free plan, hence `MAX_THUMBNAIL_PIXELS` = 1000000 in wrangler.toml).",
            "- Downloads hand R2's stream to the response and uploads hand the request's stream to R2: the bytes"
            " never enter wasm, so the Worker's own CPU does not grow with the file. The CPU column is workerd's,"
            " and locally that includes Miniflare's simulation of R2 (it hashes and writes the object in"
            " JavaScript), which is why a local upload costs CPU in proportion to its size; on the platform R2"
            " is a separate service.", ""]
    return out


def main() -> int:
    quick = "--quick" in sys.argv
    workdir = Path(tempfile.mkdtemp(prefix="matrix-edge-media-bench-"))
    try:
        results = measure(workdir, quick, log=lambda m: print(f"[media] {m}", file=sys.stderr, flush=True))
    finally:
        remove_workdir(workdir, False, print)
    lines = section(results)
    print("\n".join(lines))
    if quick:
        print(json.dumps(results, indent=1))
    else:
        report.write_section(MARK, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
