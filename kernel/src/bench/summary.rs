//! What the shell's `bench` says of one disk: whether there is anything to
//! measure, how big its reads are, and each read path's figure or why it could
//! not be measured. Pure, so it is tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::dma::IoFailure;
use crate::shell::parse::size;

/// Bytes per read request (one request in flight), as in the Linux comparison.
pub const REQUEST: u64 = 128 * 1024;
/// The most bytes of a disk the shell's `bench` reads.
pub const QUICK_BYTES: u64 = 16 << 20;

/// What `bench` does with one disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuickPlan {
    /// The disk holds no bytes: there is nothing to time.
    Empty,
    /// Read the first `bytes` of the disk in reads of at most `read_size`.
    Measure {
        /// Bytes read along each path.
        bytes: u64,
        /// Bytes per read.
        read_size: u64,
    },
}

/// The plan for a disk of `disk_bytes`: its first [`QUICK_BYTES`] in reads of
/// [`REQUEST`], or of the whole disk when it is smaller.
pub fn quick_plan(disk_bytes: u64) -> QuickPlan {
    match disk_bytes.min(QUICK_BYTES) {
        0 => QuickPlan::Empty,
        bytes => QuickPlan::Measure { bytes, read_size: REQUEST.min(bytes) },
    }
}

/// The lines `bench` prints for disk `name`: `figures` are each read path's
/// name and its MB/s, or the failure that stopped it. The figures measured
/// are printed whatever happened to the others; each one that could not be
/// gets a line of its own saying why.
pub fn quick_lines(name: &str, plan: QuickPlan, figures: &[(&str, Result<f64, IoFailure>)]) -> Vec<String> {
    let QuickPlan::Measure { bytes, read_size } = plan else {
        return alloc::vec![format!("{name}: nothing to measure: the disk holds 0 bytes")];
    };
    let rates: Vec<String> = figures
        .iter()
        .map(|(figure, result)| match result {
            Ok(rate) => format!("{figure} {rate:.1} MB/s"),
            Err(_) => format!("{figure} not measured"),
        })
        .collect();
    let mut lines = alloc::vec![format!("{name}: {} in {} reads: {}", size(bytes), size(read_size), rates.join(", "))];
    for (figure, result) in figures {
        if let Err(error) = result {
            lines.push(format!("  {figure}: {error}"));
        }
    }
    lines
}

/// The line `bench` ends with: one short pass on a host that may be busy is
/// noisy, enough for a path that copies to beat a direct read by chance.
pub const QUICK_NOISE_NOTE: &str = "one short pass on a host that may be busy: noisy enough that a path that copies \
                                    can look faster than a direct read; make bench reads whole disks, taking turns, \
                                    and repeats (3 boots, medians)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{Cause, IoReturn};

    const SPENT: IoFailure =
        IoFailure::new(IoReturn::NoResources, Cause::BounceBudgetSpent { pages: 32, in_use: 0, limit: 8 });

    #[test]
    fn the_quick_bench_says_it_is_noisy_and_points_to_make_bench() {
        assert!(QUICK_NOISE_NOTE.contains("faster than a direct read"), "{QUICK_NOISE_NOTE}");
        assert!(QUICK_NOISE_NOTE.contains("make bench") && QUICK_NOISE_NOTE.contains("repeats"));
        assert!(!QUICK_NOISE_NOTE.contains('\n') && !QUICK_NOISE_NOTE.contains("  "), "one line: {QUICK_NOISE_NOTE}");
    }

    #[test]
    fn every_figure_measured_reads_as_before() {
        let plan = quick_plan(64 << 20);
        assert_eq!(plan, QuickPlan::Measure { bytes: 16 << 20, read_size: 128 * 1024 });
        let figures = [("direct", Ok(301.25)), ("bounced", Ok(150.0)), ("forced double buffering", Ok(99.94))];
        assert_eq!(
            quick_lines("vda", plan, &figures),
            ["vda: 16 MiB in 128 KiB reads: direct 301.2 MB/s, bounced 150.0 MB/s, forced double buffering 99.9 MB/s"]
        );
    }

    #[test]
    fn a_figure_that_could_not_be_measured_says_why_and_the_others_stay() {
        let figures = [("direct", Ok(301.25)), ("bounced", Err(SPENT)), ("forced double buffering", Err(SPENT))];
        assert_eq!(
            quick_lines("vda", quick_plan(64 << 20), &figures),
            [
                "vda: 16 MiB in 128 KiB reads: direct 301.2 MB/s, bounced not measured, forced double buffering not \
                 measured",
                "  bounced: kIOReturnNoResources (0xe00002be): 32 bounce page(s) wanted, 0 of the budget's 8 in use",
                "  forced double buffering: kIOReturnNoResources (0xe00002be): 32 bounce page(s) wanted, 0 of the \
                 budget's 8 in use",
            ]
        );
    }

    #[test]
    fn an_empty_disk_is_refused_and_a_small_one_says_its_read_size() {
        assert_eq!(quick_plan(0), QuickPlan::Empty);
        assert_eq!(quick_lines("vdc", QuickPlan::Empty, &[]), ["vdc: nothing to measure: the disk holds 0 bytes"]);
        let small = quick_plan(64 * 1024);
        assert_eq!(small, QuickPlan::Measure { bytes: 64 * 1024, read_size: 64 * 1024 });
        let figures = [("direct", Ok(10.0))];
        assert_eq!(quick_lines("vdc", small, &figures), ["vdc: 64 KiB in 64 KiB reads: direct 10.0 MB/s"]);
        let odd = quick_plan(129 * 1024);
        assert_eq!(odd, QuickPlan::Measure { bytes: 129 * 1024, read_size: 128 * 1024 }, "the last read is shorter");
    }
}
