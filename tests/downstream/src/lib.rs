//! A user's crate that drills its monitoring from `cargo test` (see
//! tests/drill.rs); it holds no code of its own.
