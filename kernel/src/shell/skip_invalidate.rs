//! `experiment skip-invalidate DEV`: a transfer's pages unmapped WITHOUT the
//! IOTLB invalidation, and the next transfer, given the same IOVA, lands in
//! the old page: the unit still translates from its cache.
//!
//! 1. A read into page A: the device writes it through IOVA V, and the unit
//!    caches V -> A. Its unmap clears the leaf and gives V back, but the unit
//!    is not told (the domain's hook, `Experiment::UnmapWithoutInvalidation`).
//! 2. The CPU fills A with a canary, and B with 0x5a.
//! 3. A read into page B: first fit hands out V again, now leading to B. A
//!    unit without caching mode needs no invalidation for a new mapping, so
//!    it still holds V -> A, and the device's data lands in A.
//! 4. The domain invalidates what was left stale, for real; only then do A
//!    and B go back to the allocator. A stays allocated through it all: the
//!    device could reach it, so it was never memory anyone else could get.

use alloc::format;
use alloc::string::String;

use super::experiments::first_bytes;
use super::left::{self, Collect};
use crate::block::BlockDevice;
use crate::dma::kernel_platform::platform;
use crate::dma::{Cause, DmaBuffer, DmaPlatform, IoDirection, IommuCause};
use crate::memory::Constraints;
use crate::{driver, println};

/// What page A holds before the second read.
const CANARY: u8 = 0xc5;
/// What page B holds before the second read.
const OLD_BYTE: u8 = 0x5a;
/// The sector both reads start at: the disk's data there is not the canary.
const LBA: u64 = 0;

/// `experiment skip-invalidate DEV`.
pub fn skip_invalidate(name: &str) -> Result<(), String> {
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    let function = super::dma_steal::function_of(name)?;
    let (location, requester) = (function.location(), function.requester_id());
    let sectors = 4096 / u64::from(disk.block_size());
    crate::shell::parse::sectors_on_disk(name, LBA, sectors, disk.block_count())?;
    // No other request of this domain may be in flight: it could be given the
    // IOVA left stale. Reads `queue --no-wait` left come back first.
    left::collect(None, Collect::Everything);
    crate::dma::experiment::install();
    crate::iommu::set_experiment(requester, crate::iommu::Experiment::UnmapWithoutInvalidation).map_err(|failure| {
        match failure.cause() {
            Cause::Iommu(IommuCause::DeviceNotCovered) => format!(
                "{name} ({location}) is behind no IOMMU: this experiment needs one (pc has none: make run MACHINE=q35)"
            ),
            _ => format!("{location}: {failure}"),
        }
    })?;
    let result = run(name, &disk, requester, sectors);
    // Whatever happened, nothing stays armed and nothing stays stale.
    let _ = crate::iommu::disarm_skip_invalidation(requester);
    result
}

/// The physical address of a one-page buffer.
fn page_of(buffer: &DmaBuffer) -> Result<u64, String> {
    Ok(buffer.descriptor().physical_segment(0).map_err(|code| format!("{code}"))?.0.as_u64())
}

fn run(name: &str, disk: &alloc::sync::Arc<dyn BlockDevice>, requester: u16, sectors: u64) -> Result<(), String> {
    let accounting = platform().accounting();
    let mut old = super::commands::buffer(4096, IoDirection::In, Constraints::NONE)?;
    let bounced_before = accounting.stats().bytes_from_bounce;
    let first = disk.read(LBA, sectors, &mut old, 0).map_err(|failure| format!("the first read failed: {failure}"));
    let stale = crate::iommu::stale_pages(requester).unwrap_or(0);
    if stale == 0 {
        first?;
        println!("{name}'s reads do not go through an IOMMU mapping (legacy virtio bypasses it, or its domain passes");
        println!(
            "DMA through): no unmap happened, nothing to see. Try a disk behind the IOMMU (vdb, hda, sda, nvme0n1)."
        );
        return Ok(());
    }
    if first.is_err() || accounting.stats().bytes_from_bounce != bounced_before {
        // A bounced read freed its bounce pages, which the stale IOVA may
        // still lead to: the unit must forget it before anything else runs.
        settle(requester, [old])?;
        first?;
        return Err(format!(
            "{name}'s read was bounced: the experiment needs the device to write the buffer's own page"
        ));
    }
    let first_segments = disk.last_segments();
    let iova = first_segments.first().map_or(0, |segment| segment.address.as_u64());
    let old_page = page_of(&old)?;
    println!(
        "1. read {sectors} sector(s) of {name} into page A at {old_page:#x}: the device wrote it through IOVA {iova:#x},"
    );
    println!(
        "   and the unit cached IOVA {iova:#x} -> {old_page:#x}. The unmap cleared the leaf and gave the IOVA back,"
    );
    println!("   WITHOUT the IOTLB invalidation ({stale} page(s) left stale)");
    old.write_bytes(0, &[CANARY; 4096]).map_err(|failure| format!("{failure}"))?;
    let mut new = super::commands::buffer(4096, IoDirection::In, Constraints::NONE)?;
    new.write_bytes(0, &[OLD_BYTE; 4096]).map_err(|failure| format!("{failure}"))?;
    let new_page = page_of(&new)?;
    println!("2. the CPU fills page A with {CANARY:#04x}, and page B at {new_page:#x} with {OLD_BYTE:#04x}");
    let second = disk.read(LBA, sectors, &mut new, 0);
    let second_iova = disk.last_segments().first().map_or(0, |segment| segment.address.as_u64());
    let leads = match second_iova == iova {
        true => format!("the same IOVA {iova:#x}, whose leaf now leads to page B"),
        false => format!("IOVA {second_iova:#x}, not {iova:#x}: the stale entry was not in its way"),
    };
    println!("3. read the same sectors into page B: the device was given {leads}");
    let in_old = old.to_vec(0, 4096).map_err(|failure| format!("{failure}"))?;
    let in_new = new.to_vec(0, 4096).map_err(|failure| format!("{failure}"))?;
    settle(requester, [old, new])?;
    second.map_err(|failure| format!("the second read failed: {failure}"))?;
    println!("   page A (unmapped) now: {} ...", first_bytes(&in_old));
    println!("   page B (mapped)   now: {} ...", first_bytes(&in_new));
    let reached_old = in_old.iter().any(|&byte| byte != CANARY);
    let reached_new = in_new.iter().any(|&byte| byte != OLD_BYTE);
    match (reached_old, reached_new) {
        (true, false) => {
            println!("The device's data landed in page A, which no leaf maps any more: the unit translated IOVA");
            println!("{iova:#x} from its IOTLB, not from the table. Page B never got it, and the read said success.");
            println!(
                "Had page A gone back to the allocator, the disk's data would have overwritten someone else's memory."
            );
        }
        (false, true) => {
            println!("The data landed in page B: the unit walked the new leaf (it did not hold the old translation,");
            println!("or it was told to forget it, as a unit in caching mode is at every map).");
        }
        _ => println!("Neither page holds only what it held before as expected: see iommu for faults."),
    }
    println!("4. the stale range was invalidated for real; pages A and B went back to the allocator only then.");
    Ok(())
}

/// Makes the unit forget the stale range, then lets `buffers` go. When it
/// does not confirm, the device may still reach them: they are kept for ever.
fn settle<const N: usize>(requester: u16, buffers: [DmaBuffer; N]) -> Result<(), String> {
    match crate::iommu::invalidate_stale(requester) {
        Ok(_) => Ok(()),
        Err(failure) => {
            core::mem::forget(buffers);
            Err(format!(
                "the unit did not confirm the invalidation ({failure}): the pages are kept for ever, never reused"
            ))
        }
    }
}
