//! Benchmarks: `make bench` boots the kernel with `bench` on its command line
//! and gets [`full`]; the shell's `bench` runs [`quick`].

mod paths;
mod queue_depth;
mod report;

pub use paths::{ReadPath, read_throughputs};
pub use queue_depth::{Pattern, Throughput, read_at_depth};
pub use report::{full, quick};
