//! wasm entry points of the hot-path microbenchmarks (feature `bench-exports`; built by
//! `bench/hotpaths.py` with `wasm-bindgen --target nodejs`, called by `bench/hotpaths.mjs`).
//! The timing loop runs inside wasm with `performance.now()`, so one call covers a whole
//! operation's samples and the JS↔wasm crossing is not in the figures.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    // Node's global `performance` (microsecond resolution, unlike `Date.now()`).
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// The operations, as a JSON array of `[name, description]`.
#[wasm_bindgen]
pub fn bench_hotpath_ops() -> String {
    serde_json::to_string(&crate::hotpaths::OPS).expect("static list serialises")
}

/// Builds the fixture of `op`, warms up and returns microseconds per run, one per sample.
#[wasm_bindgen]
pub fn bench_hotpath_samples(op: &str) -> Result<Vec<f64>, JsError> {
    let mut run =
        crate::hotpaths::prepare(op).ok_or_else(|| JsError::new(&format!("unknown op {op}")))?;
    Ok(crate::hotpaths::samples(&mut run, &performance_now))
}
