//! Decision cost with many requests queued.

fn main() {}
