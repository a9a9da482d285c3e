//! Helpers shared by the benchmark binaries (`echo-load`, `fanout-load`): CPU time and memory of
//! processes and of the machine, read from Linux's `/proc`.

pub mod procfs;
