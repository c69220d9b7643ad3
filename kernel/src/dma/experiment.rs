//! Safety steps a learner may switch off for one transfer, to watch what goes
//! wrong (the shell's `experiment` and `iommu break` commands). They act
//! through the DMA layer's hooks ([`super::hooks`]): [`Experiments`] answers
//! the core's questions, and arming a step installs it. Nothing is skipped
//! unless a step is armed on a platform (`Accounting::arm_experiment`), an
//! IOMMU domain (`VtdDomain::set_experiment`) or a disk's driver
//! ([`arm_check`]), and an armed step is skipped once, at the first transfer
//! there that would have done it, then it is on again.
//!
//! For `experiment synchronize`, [`device_writes`] and [`device_reads`] play
//! a device on a prepared command's segments, so that synchronize can be
//! watched between the device's accesses.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Mutex;
use x86_64::PhysAddr;

use super::hooks::{self, Addresses, DmaHooks, DriverCheck, Reach, Site};
use super::specification::Rules;
use super::trace::dma_trace;
use super::{Accounting, Cause, DmaAddr, IoDmaCommand, IoFailure, IoReturn};

pub use super::hooks::Skip;

/// What is armed now: per platform the one step to skip, per IOMMU domain an
/// unmap at once or an unmap without invalidation, per driver the one check
/// to skip.
struct Armed {
    steps: Vec<(Site, Skip)>,
    unmaps: Vec<Site>,
    invalidations: Vec<Site>,
    checks: Vec<(Site, DriverCheck)>,
    elsewhere: Vec<(Site, DmaAddr)>,
}

static ARMED: Mutex<Armed> = Mutex::new(Armed {
    steps: Vec::new(),
    unmaps: Vec::new(),
    invalidations: Vec::new(),
    checks: Vec::new(),
    elsewhere: Vec::new(),
});

/// How many entries `ARMED` holds, kept beside it so that the transfers of a
/// machine with nothing armed (nearly always) ask with one load, not the lock:
/// the hooks stay installed once the first experiment ran.
static ARMED_COUNT: AtomicUsize = AtomicUsize::new(0);

impl Armed {
    /// Publishes how many entries there are now (under the lock).
    fn settle(&self) {
        let count =
            self.steps.len() + self.unmaps.len() + self.invalidations.len() + self.checks.len() + self.elsewhere.len();
        ARMED_COUNT.store(count, Ordering::Release);
    }
}

/// Whether anything is armed at all.
fn anything_armed() -> bool {
    ARMED_COUNT.load(Ordering::Acquire) != 0
}

/// The experiments, as the DMA layer's hooks.
pub struct Experiments;

/// The one instance, which [`install`] hands the DMA layer.
pub static EXPERIMENTS: Experiments = Experiments;

/// Installs the experiments as the DMA layer's hooks (once; arming does it
/// too). `false` if other hooks were installed first.
pub fn install() -> bool {
    hooks::install(&EXPERIMENTS)
}

/// Skips `step` once, at the next transfer on `site` that would do it; a step
/// armed there before is replaced.
pub fn arm(site: Site, step: Skip) {
    install();
    let mut armed = ARMED.lock();
    armed.steps.retain(|&(armed_site, _)| armed_site != site);
    armed.steps.push((site, step));
    armed.settle();
}

/// Nothing is skipped on `site` any more; returns whether a step was still
/// armed (no transfer reached it).
pub fn disarm(site: Site) -> bool {
    let mut armed = ARMED.lock();
    let before = armed.steps.len();
    armed.steps.retain(|&(armed_site, _)| armed_site != site);
    armed.settle();
    armed.steps.len() != before
}

/// The IOMMU domain `site` unmaps its next mapping at once.
pub fn arm_unmap_at_once(site: Site) {
    install();
    let mut armed = ARMED.lock();
    if !armed.unmaps.contains(&site) {
        armed.unmaps.push(site);
    }
    armed.settle();
}

/// The IOMMU domain `site` skips the IOTLB invalidation of its next unmap.
pub fn arm_skip_invalidation(site: Site) {
    install();
    let mut armed = ARMED.lock();
    if !armed.invalidations.contains(&site) {
        armed.invalidations.push(site);
    }
    armed.settle();
}

/// The IOMMU domain `site` invalidates at every unmap again; returns whether
/// the skip was still armed (no unmap reached it).
pub fn disarm_skip_invalidation(site: Site) -> bool {
    let mut armed = ARMED.lock();
    let before = armed.invalidations.len();
    armed.invalidations.retain(|&armed| armed != site);
    armed.settle();
    armed.invalidations.len() != before
}

/// The driver at `site` (a disk's hardware queue,
/// [`crate::block::BlockDevice::hooks_site`]) skips `check` once, for the next
/// transfer it programs; a check armed there before is replaced.
pub fn arm_check(site: Site, check: DriverCheck) {
    install();
    let mut armed = ARMED.lock();
    armed.checks.retain(|&(armed_site, _)| armed_site != site);
    armed.checks.push((site, check));
    armed.settle();
}

/// The driver at `site` skips nothing any more; returns whether a check was
/// still armed (the driver never asked).
pub fn disarm_check(site: Site) -> bool {
    let mut armed = ARMED.lock();
    let before = armed.checks.len();
    armed.checks.retain(|&(armed_site, _)| armed_site != site);
    armed.settle();
    armed.checks.len() != before
}

/// The next transfer on `site` (a platform's accounting) gives its device
/// `address` in place of its first segment's: the device goes where nothing
/// was lent to it, as a malicious one would (`experiment dma-steal`).
pub fn arm_elsewhere(site: Site, address: DmaAddr) {
    install();
    let mut armed = ARMED.lock();
    armed.elsewhere.retain(|&(armed_site, _)| armed_site != site);
    armed.elsewhere.push((site, address));
    armed.settle();
}

/// Transfers on `site` give their devices their own segments again; returns
/// whether the address was still armed (no transfer took it).
pub fn disarm_elsewhere(site: Site) -> bool {
    let mut armed = ARMED.lock();
    let before = armed.elsewhere.len();
    armed.elsewhere.retain(|&(armed_site, _)| armed_site != site);
    armed.settle();
    armed.elsewhere.len() != before
}

/// The address armed on `site`, if any; disarmed now: taken this once.
fn take_elsewhere(site: Site) -> Option<DmaAddr> {
    if !anything_armed() {
        return None;
    }
    let mut armed = ARMED.lock();
    let index = armed.elsewhere.iter().position(|&(armed_site, _)| armed_site == site)?;
    let (_, address) = armed.elsewhere.remove(index);
    armed.settle();
    Some(address)
}

/// Whether `step` is armed on `site`; if so it is disarmed now: skipped this once.
fn take(site: Site, step: Skip) -> bool {
    if !anything_armed() {
        return false;
    }
    let mut armed = ARMED.lock();
    let before = armed.steps.len();
    armed.steps.retain(|&armed| armed != (site, step));
    armed.settle();
    armed.steps.len() != before
}

impl DmaHooks for Experiments {
    fn adjust_rules(&self, site: Site, command: u64, rules: &mut Rules, reach: Reach) -> Addresses {
        let mut addresses = Addresses::Whole;
        if reach == Reach::Limited && take(site, Skip::Reach) {
            // Nothing is bounced for reach, and the device gets addresses it
            // cannot hold.
            dma_trace!("  EXPERIMENT: nothing is bounced for the address limit: the device's records are cut");
            log::warn!("experiment: command #{command} gives its device addresses beyond its limit");
            rules.highest_address = u64::MAX;
            addresses = Addresses::CutToDeviceWidth;
        }
        if rules.boundary != 0 && take(site, Skip::Boundary) {
            // One transfer whose segments may cross the boundary, to see what
            // the device does with them.
            dma_trace!("  EXPERIMENT: segments are not split at the {:#x} boundary", rules.boundary);
            log::warn!("experiment: command #{command} does not split at its {:#x} boundary", rules.boundary);
            rules.boundary = 0;
        }
        let in_page_rules = rules.alignment_internal > rules.alignment || rules.virtual_boundary != 0;
        if in_page_rules && take(site, Skip::InternalAlignment) {
            // Later segments may start where the first may: a piece starting
            // inside a page reaches the device as it is.
            dma_trace!(
                "  EXPERIMENT: segments after the first need not start on {:#x}: nothing is bounced for it",
                rules.alignment_internal
            );
            log::warn!(
                "experiment: command #{command} gives its device segments that do not start on {:#x}",
                rules.alignment_internal
            );
            rules.alignment_internal = rules.alignment;
            // The virtual boundary says the same of later segments' starts
            // (and of earlier segments' ends): off for this transfer too.
            rules.virtual_boundary = 0;
        }
        if let Some(address) = take_elsewhere(site) {
            // The rules stay: the transfer is planned as ever, and only the
            // device's first record is aimed elsewhere.
            dma_trace!("  EXPERIMENT: the device is given {:#x}, which nothing lent it", address.as_u64());
            log::warn!(
                "experiment: command #{command} aims its device at {:#x}, which nothing lent it",
                address.as_u64()
            );
            addresses = Addresses::Elsewhere(address);
        }
        addresses
    }

    fn skip(&self, site: Site, command: u64, step: Skip) -> bool {
        if !take(site, step) {
            return false;
        }
        match step {
            Skip::Fill => {
                dma_trace!("  EXPERIMENT: the fill of bounce memory is skipped: the device reads what its frames held");
                log::warn!("experiment: prepare skipped the fill of bounce memory (command #{command})");
            }
            Skip::CopyBack => {
                dma_trace!("  EXPERIMENT: the copy out of bounce memory is skipped: the buffer keeps its old bytes");
                log::warn!("experiment: complete skipped the copy out of bounce memory (command #{command})");
            }
            Skip::Boundary | Skip::Reach | Skip::InternalAlignment => {}
        }
        true
    }

    fn unmap_at_once(&self, site: Site) -> bool {
        if !anything_armed() {
            return false;
        }
        let mut armed = ARMED.lock();
        let before = armed.unmaps.len();
        armed.unmaps.retain(|&armed| armed != site);
        armed.settle();
        armed.unmaps.len() != before
    }

    fn skip_invalidation(&self, site: Site) -> bool {
        anything_armed() && disarm_skip_invalidation(site)
    }

    fn skip_check(&self, site: Site, check: DriverCheck) -> bool {
        if !anything_armed() {
            return false;
        }
        let mut armed = ARMED.lock();
        let before = armed.checks.len();
        armed.checks.retain(|&armed| armed != (site, check));
        armed.settle();
        let skipped = armed.checks.len() != before;
        if skipped {
            dma_trace!("  EXPERIMENT: the driver skips its own check ({check:?}) for this transfer");
            log::warn!("experiment: a driver skips its own check ({check:?}) for one transfer");
        }
        skipped
    }
}

/// Arming on a platform, as the shell has always done it. These live here, not
/// in `accounting.rs`: the accounting holds no experiment state.
impl Accounting {
    /// Skips `step` once, at the next transfer on this platform that would do
    /// it (see [`arm`]).
    pub fn arm_experiment(&self, step: Skip) {
        arm(Site::of(self), step);
    }

    /// Nothing is skipped any more; returns whether a step was still armed (no
    /// transfer reached it).
    pub fn disarm_experiment(&self) -> bool {
        disarm(Site::of(self))
    }
}

/// The segments of a prepared command that has no IOMMU in between, whose
/// addresses are physical: what a played device may touch.
fn physical_segments(command: &IoDmaCommand) -> Result<&[super::Segment], IoFailure> {
    if !command.is_prepared() {
        return Err(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
    }
    if command.mapper().is_some() {
        return Err(IoFailure::new(IoReturn::NotPermitted, Cause::SegmentsAreIovas));
    }
    Ok(command.segments())
}

/// Plays the device for a demonstration: writes `data` through the prepared
/// `command`'s segments, in order, as its DMA would.
pub fn device_writes(command: &IoDmaCommand, data: &[u8]) -> Result<(), IoFailure> {
    device_writes_at(command, 0, data)
}

/// As [`device_writes`], from byte `offset` of the prepared range: a device
/// part way through a frame.
pub fn device_writes_at(command: &IoDmaCommand, offset: u64, data: &[u8]) -> Result<(), IoFailure> {
    let mut position = 0u64;
    let mut done = 0;
    for segment in physical_segments(command)? {
        let (start, end) = (position, position + segment.length);
        position = end;
        if done == data.len() || end <= offset + done as u64 {
            continue;
        }
        let skip = (offset + done as u64).saturating_sub(start);
        let length = ((segment.length - skip) as usize).min(data.len() - done);
        let address = PhysAddr::new(segment.address.as_u64() + skip);
        // SAFETY: a prepared command's segments are memory lent to its device
        // (the descriptor's pages or the command's own bounce pages) until
        // complete; the caller plays that device, and nothing else writes them.
        unsafe { command.platform().write_as_device(address, &data[done..done + length]) };
        done += length;
    }
    Ok(())
}

/// Plays the device for a demonstration: reads `length` bytes through the
/// prepared `command`'s segments, as its DMA would.
pub fn device_reads(command: &IoDmaCommand, length: usize) -> Result<Vec<u8>, IoFailure> {
    let mut data = alloc::vec![0u8; length];
    let mut done = 0;
    for segment in physical_segments(command)? {
        let take = (segment.length as usize).min(length - done);
        // SAFETY: as in `device_writes`; reading does not change the memory.
        unsafe {
            command.platform().read_as_device(PhysAddr::new(segment.address.as_u64()), &mut data[done..done + take])
        };
        done += take;
    }
    Ok(data)
}
