//! The native column of docs/hotpaths.md: the same fixtures and timing loop as the wasm exports
//! (`src/hotpaths.rs`), compiled for this machine with the release profile the Worker uses.
//! Prints `{"op": [µs per run, …], …}`. Run by `bench/hotpaths.py`:
//!   cargo run --release --features bench-exports --example hotpaths [op …]

use std::time::Instant;

use matrix_edge::hotpaths::{prepare, samples, OPS};

fn main() {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    let now = || start.elapsed().as_secs_f64() * 1000.0;
    let mut out = serde_json::Map::new();
    for (name, _) in OPS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let mut run = prepare(name).expect("listed op");
        out.insert(name.into(), samples(&mut run, &now).into());
    }
    println!("{}", serde_json::Value::Object(out));
}
