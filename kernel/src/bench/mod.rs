//! Benchmarks: `make bench` boots the kernel with `bench` on its command line
//! and gets [`full`]; the shell's `bench` runs [`quick`]. The queue-depth loop
//! also builds on the host, for its tests against a fake disk.

#[cfg(target_os = "none")]
mod paths;
mod queue_depth;
#[cfg(target_os = "none")]
mod report;
mod summary;

#[cfg(target_os = "none")]
pub use paths::{ReadPath, read_throughputs};
#[cfg(target_os = "none")]
pub use queue_depth::read_at_depth;
pub use queue_depth::{Group, Pattern, Split, Throughput, read_requests};
#[cfg(target_os = "none")]
pub use report::{full, quick};
pub use summary::{QUICK_NOISE_NOTE, QuickPlan, quick_lines, quick_plan};
