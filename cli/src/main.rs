//! The `deepedge` command line.
fn main() {}
