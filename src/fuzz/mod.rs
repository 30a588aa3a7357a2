//! Property tests ("fuzzing") of every parser of outside input: random and mutated inputs,
//! checked for "never panics, bad input is an error, what we write parses back the same".
//!
//! Each target runs a bounded number of cases in `cargo test` (proptest's default, 256, or
//! `PROPTEST_CASES`); `make fuzz` runs them long with a large `PROPTEST_CASES`. Every target
//! prints `fuzz <target>: <n> executions` (seen with `--nocapture`), so a run's size is on
//! record (docs/security.md, "Fuzzing"). A failure prints the shrunk input; each bug found is
//! fixed next to its parser with a plain regression test.

mod api;
mod discovery;
mod federation;
mod media;
mod sync;

use std::cell::Cell;
use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

/// Runs `test` on values of `strategy` and reports how many executions it took. Failures are
/// not written to a regressions file: each is turned into a named regression test instead.
pub(crate) fn run<S>(
    target: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let executions = Cell::new(0u64);
    let result = runner.run(&strategy, |value| {
        executions.set(executions.get() + 1);
        test(value)
    });
    eprintln!("fuzz {target}: {} executions", executions.get());
    if let Err(failure) = result {
        panic!("fuzz target {target} failed: {failure}");
    }
}

/// Any JSON value, nested a few levels, with the numbers canonical JSON allows and some it
/// does not (floats, integers past 2^53).
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A JSON object (what every request body and PDU is).
pub(crate) fn json_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map(".{0,8}", json_value(), 0..8)
        .prop_map(|map| map.into_iter().collect())
}

/// Bytes that are sometimes JSON, sometimes almost JSON, sometimes noise.
pub(crate) fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), any::<usize>(), any::<u8>()).prop_map(|(v, at, byte)| {
            let mut bytes = v.to_string().into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}
