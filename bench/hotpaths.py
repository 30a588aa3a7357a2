"""CPU cost of the hot paths, in microseconds per operation: the pure code of the server built
to wasm and timed in Node/V8 (the JavaScript engine workerd runs the Worker in), next to the
same code built natively. `make bench` includes the section in docs/benchmarks.md; alone it
writes docs/hotpaths.md:

  make bench-hotpaths          (or: source scripts/env.sh; python3 bench/hotpaths.py [op ...])

Builds the library with the `bench-exports` feature (src/hotpaths.rs, src/bench_exports.rs)
into a separate wasm under the cargo target directory; the Worker's build/ is not touched.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FREE_PLAN_CPU_MS = 10
CARGO_FLAGS = ["--release", "--features", "bench-exports"]
PBKDF2 = {
    "pbkdf2_30000": "PBKDF2-HMAC-SHA256 through WebCrypto at 30,000 iterations (the default"
                    " `PASSWORD_ITERATIONS`), as `runtime::crypto::pbkdf2_sha256` asks the platform"
                    " for it (importKey + deriveBits of 32 bytes); native code, not wasm",
    "pbkdf2_100000": "the same at 100,000 iterations (the highest `PASSWORD_ITERATIONS`; workerd refuses more)",
}
LABELS = {
    "build_event": "Create and sign a local event",
    "prepare_local": "Local send, CPU part (auth events + create/sign + authorise)",
    "verify_pdu": "Verify an incoming PDU (signature, content hash, event id)",
    "authorize": "Authorise an event (message, 12-member room)",
    "state_res_10": "State resolution, conflicted set of 10",
    "state_res_100": "State resolution, conflicted set of 100",
    "state_res_1000": "State resolution, conflicted set of 1,000",
    "push_rules_50": "Push rules of a message for 50 members (default rules)",
    "thumbnail_jpeg_12mp": "Thumbnail of a 12 MP JPEG (320x240 scale)",
    "thumbnail_png_4mp": "Thumbnail of a 4 MP PNG (320x240 scale)",
    "pbkdf2_30000": "Password hash, PBKDF2 30,000 (WebCrypto)",
    "pbkdf2_100000": "Password hash, PBKDF2 100,000 (WebCrypto)",
}


def log(msg: str) -> None:
    print(f"[hotpaths {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def run(cmd: list[str], env: dict | None = None) -> str:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


# The native build uses curve25519-dalek's portable (serial) backend, as wasm does. Its default
# on x86_64, the AVX2 backend picked at run time, is pathologically slow at the Worker's
# opt-level "z" (ed25519 verification measured about 40 times slower than serial), which would
# make the native column say nothing about wasm. The flag changes every crate's fingerprint, so
# the build gets its own target directory rather than invalidating the usual one.
NATIVE_ENV = {"RUSTFLAGS": '--cfg curve25519_dalek_backend="serial"',
              "CARGO_TARGET_DIR": str(target_dir() / "hotpaths-native")}


def measure(ops: list[str] | None = None) -> dict:
    """Builds both variants and times each operation in both; returns the raw samples."""
    out_dir = target_dir() / "hotpaths-wasm"
    log("building the bench wasm (cargo --features bench-exports, wasm-bindgen --target nodejs)")
    run(["cargo", "build", "--lib", "--target", "wasm32-unknown-unknown", *CARGO_FLAGS])
    wasm = target_dir() / "wasm32-unknown-unknown" / "release" / "matrix_edge.wasm"
    run([os.environ.get("WASM_BINDGEN_BIN", "wasm-bindgen"), "--target", "nodejs", "--out-dir", str(out_dir), str(wasm)])
    log("building the native example")
    run(["cargo", "build", "--example", "hotpaths", *CARGO_FLAGS], NATIVE_ENV)
    # One operation at a time, wasm and native in turns (A B, B A, ...), so drift in the
    # machine's load hits both columns alike.
    node = {"ops": {}, "described": {}, "pbkdf2_cpu_us": {}}
    native: dict = {}

    def in_node(op: str) -> None:
        part = json.loads(run(["node", str(ROOT / "bench" / "hotpaths.mjs"), str(out_dir), op]))
        for key in ("ops", "described", "pbkdf2_cpu_us"):
            node[key].update(part[key])
        node["node"], node["v8"] = part["node"], part["v8"]

    def natively(op: str) -> None:
        exe = Path(NATIVE_ENV["CARGO_TARGET_DIR"]) / "release" / "examples" / "hotpaths"
        native.update(json.loads(run([str(exe), op])))

    for i, op in enumerate(ops or list(LABELS)):
        log(f"timing {op}")
        for measure_one in ((in_node, natively) if i % 2 == 0 else (natively, in_node)):
            measure_one(op)
    return {"wasm": node["ops"], "native": native, "described": {**node["described"], **PBKDF2},
            "pbkdf2_cpu_us": node["pbkdf2_cpu_us"], "node": node["node"], "v8": node["v8"],
            "rustc": run(["rustc", "--version"]).strip()}


def section(result: dict, largest: tuple[str, float] | None) -> list[str]:
    """The markdown section; `largest` is the costliest single client request the platform-cost
    pass measured (label, local process CPU ms), if known."""
    wasm, native = result["wasm"], result["native"]
    med = lambda xs: report.median(xs) if xs else None
    cell = lambda x: "–" if x is None else report.fmt(x)
    out = ["## CPU cost of hot paths (wasm in Node/V8 vs native)", "",
           f"Microseconds per operation, the yardstick being the free plan's {FREE_PLAN_CPU_MS} ms of CPU per"
           " request (10,000 µs).", "",
           "- wasm: the server's pure code built with the cargo feature `bench-exports` (`src/hotpaths.rs`,"
           " `src/bench_exports.rs`; not in the deployed Worker) and the Worker's release profile (opt-level z,"
           " LTO, no wasm-opt, as `worker-build --release --no-opt`), bound by `wasm-bindgen --target nodejs`"
           f" and run in Node {result['node']} (V8 {result['v8']}), the engine workerd runs Workers in. The"
           " timing loop runs inside wasm with `performance.now()`: warm-up of at least 300 ms, then batches of"
           " about 5 ms, 31 samples (at least 7 within 4 s for slow operations); median and p90 of µs per"
           " operation over the samples.",
           f"- native: the same fixtures and loop (`examples/hotpaths.rs`), same profile, {platform.machine()},"
           f" {result['rustc']}, with curve25519-dalek's portable backend as in wasm (its default AVX2 backend"
           " is many times slower at opt-level z; see `NATIVE_ENV` in bench/hotpaths.py). wasm32 gets that"
           " backend with 32-bit limbs, x86_64 with 64-bit ones.",
           "- Every operation is single-threaded and waits on nothing, so its wall time is its CPU time. The"
           " fixtures are built with the room engine (room version 12, real hashes, signatures and event ids)"
           " before the clock starts.",
           "- Password hashing is not wasm: the Worker asks WebCrypto (`src/runtime/crypto.rs`), which the"
           " platform runs in native code. Those rows time Node's WebCrypto PBKDF2 from `bench/hotpaths.mjs`"
           " (wall time per derivation, one at a time); workerd's WebCrypto is also native (BoringSSL), so"
           " there is no separate native column.",
           f"- Machine: {report.machine()}.", "",
           "| operation | wasm µs median | wasm µs p90 | native µs median | native µs p90 | wasm / native |"
           f" wasm median, % of {FREE_PLAN_CPU_MS} ms |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, label in LABELS.items():
        if name not in wasm:
            continue
        w, n = wasm[name], native.get(name, [])
        wm, nm = med(w), med(n)
        ratio = f"{wm / nm:.1f}" if nm else "–"
        out.append(f"| {label} | {cell(wm)} | {cell(report.p90(w))} | {cell(nm)} |"
                   f" {cell(report.p90(n) if n else None)} | {ratio} | {wm / (FREE_PLAN_CPU_MS * 10):.2f}% |")
    out += ["", "What one operation runs:", ""]
    out += [f"- `{name}`: {result['described'][name]}." for name in LABELS if name in wasm]
    cpu = result.get("pbkdf2_cpu_us", {})
    if cpu:
        out.append("- PBKDF2 check: Node's process CPU time over the same derivations was "
                   + ", ".join(f"{cpu[k] / 1000:.2f} ms per derivation at {k.split('_')[1]} iterations"
                               for k in cpu) + " (the work happens on Node's thread pool).")
    out += [""] + findings(result, largest) + [""]
    return out


def findings(result: dict, largest: tuple[str, float] | None) -> list[str]:
    wasm, native = result["wasm"], result["native"]
    ms = lambda name: report.median(wasm[name]) / 1000 if name in wasm else None
    out = ["Reading the table against the free plan's 10 ms per request:", ""]
    send = ms("prepare_local")
    if send is not None:
        out.append(f"- A local send costs about {send * 1000:.0f} µs of wasm CPU for the event itself"
                   f" ({send / FREE_PLAN_CPU_MS * 100:.1f}% of 10 ms); the rest of a request's CPU is JSON, routing"
                   " and the D1/Durable Object calls around it.")
    verify, auth = ms("verify_pdu"), ms("authorize")
    if verify is not None and auth is not None:
        per = FREE_PLAN_CPU_MS / (verify + auth)
        out.append(f"- An incoming federated PDU (verify + authorise) costs {(verify + auth) * 1000:.0f} µs:"
                   f" about {per:.0f} fit into one request's 10 ms, against the 50 PDUs a federation"
                   " transaction may carry.")
    for name, size in (("state_res_100", "100"), ("state_res_1000", "1,000")):
        t = ms(name)
        if t is None:
            continue
        line = f"- State resolution of a conflicted set of {size}: {t:.1f} ms in wasm, "
        if t <= FREE_PLAN_CPU_MS:
            out.append(line + f"{t / FREE_PLAN_CPU_MS * 100:.0f}% of the free plan's 10 ms.")
        else:
            out.append(line + f"{t / FREE_PLAN_CPU_MS:.1f} times the free plan's 10 ms: a fork that large"
                       " resolves within one request only on the paid plan (30 s of CPU by default).")
    for name, iters in (("pbkdf2_30000", "30,000"), ("pbkdf2_100000", "100,000")):
        t = ms(name)
        if t is not None:
            out.append(f"- PBKDF2 at {iters} iterations: {t:.1f} ms"
                       f" ({'fits' if t <= FREE_PLAN_CPU_MS else 'exceeds'} 10 ms on this machine).")
    ratios = [report.median(wasm[k]) / report.median(native[k]) for k in native if k in wasm]
    if ratios:
        out.append(f"- wasm in V8 runs this code {min(ratios):.1f} to {max(ratios):.1f} times slower than native"
                   " on the same machine.")
    if largest:
        label, cpu_ms = largest
        out.append(f"- The costliest single client request in the platform-cost pass of `make bench` is"
                   f" **{label}** at {cpu_ms:.1f} ms of local process CPU (workerd, including local D1's SQLite"
                   " work and HTTP handling: an upper bound of the Worker's own CPU).")
    return out


def largest_from_doc() -> tuple[str, float] | None:
    """The costliest single request recorded by the last `make bench` (docs/benchmarks.md)."""
    try:
        text = (ROOT / "docs" / "benchmarks.md").read_text()
    except OSError:
        return None
    m = re.search(r"Largest CPU time of a single client request[^*]*\*\*(.+?)\*\*, ([\d.]+) ms", text)
    return (m.group(1), float(m.group(2))) if m else None


def main() -> int:
    ops = sys.argv[1:]
    loadavg = lambda: " ".join(Path("/proc/loadavg").read_text().split()[:3])
    load, started = loadavg(), time.time()
    result = measure(ops)
    now = time.strftime("%Y-%m-%d %H:%M %Z")
    doc = ["# CPU cost of the hot paths", "",
           f"Produced by `bench/hotpaths.py` (`make bench-hotpaths`) on {now} in {time.time() - started:.0f} s;"
           " `make bench` puts the same section into docs/benchmarks.md. Load average (1, 5, 15 min) at the"
           f" start {load}, at the end {loadavg()}: anything above 1 means other work shared the machine.", ""]
    doc += section(result, largest_from_doc())
    if not ops:
        (ROOT / "docs" / "hotpaths.md").write_text("\n".join(doc))
        log("wrote docs/hotpaths.md")
    print("\n".join(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
