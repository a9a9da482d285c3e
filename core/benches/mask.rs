//! Placeholder until the masking benchmark lands.
fn main() {}
