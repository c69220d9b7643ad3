//! How the fake controller finds a command's data: PRP1/PRP2 and PRP list
//! pages, or an SGL, walked by the rules QEMU's `hw/nvme/ctrl.c` applies
//! (`nvme_map_prp`, `nvme_map_sgl`), with the same statuses for what it
//! refuses:
//!
//! * PRP1 may start anywhere; it covers up to the end of its page.
//! * If one more page or less remains, PRP2 is that data and must be page
//!   aligned (else PRP Offset Invalid).
//! * If more remains, PRP2 points at a list (it may have an offset: the list's
//!   first page then holds fewer entries). Every entry must be page aligned
//!   (else PRP Offset Invalid). The last entry of a list page, when more than
//!   one page of data remains, is read as a pointer to the next list page,
//!   which must be page aligned too: a list does not run off its page.
//! * SGL: a Data Block in the command; or (Last) Segment descriptors of a
//!   non-zero multiple of 16 bytes, whose descriptors are Data Blocks and, only
//!   in a Segment (not a Last Segment), a final pointer to the next segment.
//!   The descriptors must describe exactly the command's length.
//!
//! The walk reads descriptor memory through `read`, which the fake makes
//! assert that the memory is allocated (a controller reading freed memory is
//! a driver bug, caught at once).

use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::{GenericStatus, NvmeStatus};

use crate::nvme::registers::PAGE_SIZE;
use crate::nvme::structures::{SGL_DATA_BLOCK, SGL_LAST_SEGMENT, SGL_SEGMENT, SglDescriptor};

/// A run of memory the command's data moves through.
pub type Run = (u64, u64);

/// Reads device memory.
pub type Reader<'a> = &'a dyn Fn(u64, &mut [u8]);

fn refuse(status: GenericStatus) -> NvmeStatus {
    NvmeStatus::Generic(status)
}

/// The runs PRP1/PRP2 describe for `length` bytes, or the status QEMU answers.
pub fn map_prp(read: Reader<'_>, prp1: u64, prp2: u64, length: u64) -> Result<Vec<Run>, NvmeStatus> {
    let page_mask = PAGE_SIZE - 1;
    let first = (PAGE_SIZE - (prp1 & page_mask)).min(length);
    let mut runs = vec![(prp1, first)];
    let mut remaining = length - first;
    if remaining == 0 {
        return Ok(runs);
    }
    if remaining <= PAGE_SIZE {
        if prp2 & page_mask != 0 {
            return Err(refuse(GenericStatus::PrpOffsetInvalid));
        }
        runs.push((prp2, remaining));
        return Ok(runs);
    }
    let entries_per_page = PAGE_SIZE / 8;
    // The first list page may start at an offset: it holds what is left of it.
    let mut entries = (PAGE_SIZE - (prp2 & page_mask)) / 8;
    let mut list = read_list(read, prp2, entries.min(entries_per_page));
    let mut index = 0;
    while remaining != 0 {
        let mut entry = list[index as usize];
        if index == entries - 1 && remaining > PAGE_SIZE {
            // The last entry chains to the next list page.
            if entry & page_mask != 0 {
                return Err(refuse(GenericStatus::PrpOffsetInvalid));
            }
            index = 0;
            entries = remaining.div_ceil(PAGE_SIZE).min(entries_per_page);
            list = read_list(read, entry, entries);
            entry = list[0];
        }
        if entry & page_mask != 0 {
            return Err(refuse(GenericStatus::PrpOffsetInvalid));
        }
        let here = remaining.min(PAGE_SIZE);
        runs.push((entry, here));
        remaining -= here;
        index += 1;
    }
    Ok(runs)
}

fn read_list(read: Reader<'_>, address: u64, entries: u64) -> Vec<u64> {
    let mut bytes = vec![0u8; entries as usize * 8];
    read(address, &mut bytes);
    bytes.as_chunks::<8>().0.iter().map(|chunk| u64::from_le_bytes(*chunk)).collect()
}

/// The runs an SGL whose first descriptor is `first` describes for `length`
/// bytes, or the status QEMU answers.
pub fn map_sgl(read: Reader<'_>, first: SglDescriptor, length: u64) -> Result<Vec<Run>, NvmeStatus> {
    let mut runs = Vec::new();
    let mut remaining = length;
    if first.descriptor_type() == SGL_DATA_BLOCK {
        map_data(&[first], &mut remaining, &mut runs)?;
        return finish(remaining, runs);
    }
    let mut pointer = first;
    loop {
        let kind = pointer.descriptor_type();
        if kind != SGL_SEGMENT && kind != SGL_LAST_SEGMENT {
            return Err(refuse(GenericStatus::InvalidSglSegmentDescriptor));
        }
        if pointer.length == 0 || !pointer.length.is_multiple_of(16) {
            return Err(refuse(GenericStatus::InvalidSglSegmentDescriptor));
        }
        if u64::MAX - pointer.address < u64::from(pointer.length) {
            return Err(refuse(GenericStatus::DataSglLengthInvalid));
        }
        let mut bytes = vec![0u8; pointer.length as usize];
        read(pointer.address, &mut bytes);
        let segment: Vec<SglDescriptor> = bytes.as_chunks::<16>().0.iter().map(SglDescriptor::from_bytes).collect();
        let last = *segment.last().expect("a non-empty segment");
        if last.descriptor_type() == SGL_DATA_BLOCK {
            map_data(&segment, &mut remaining, &mut runs)?;
            return finish(remaining, runs);
        }
        if kind == SGL_LAST_SEGMENT {
            return Err(refuse(GenericStatus::InvalidSglSegmentDescriptor));
        }
        map_data(&segment[..segment.len() - 1], &mut remaining, &mut runs)?;
        pointer = last;
    }
}

fn map_data(descriptors: &[SglDescriptor], remaining: &mut u64, runs: &mut Vec<Run>) -> Result<(), NvmeStatus> {
    for descriptor in descriptors {
        match descriptor.descriptor_type() {
            SGL_DATA_BLOCK => {}
            SGL_SEGMENT | SGL_LAST_SEGMENT => return Err(refuse(GenericStatus::InvalidSglDescriptorCount)),
            _ => return Err(refuse(GenericStatus::SglDescriptorTypeInvalid)),
        }
        let length = u64::from(descriptor.length);
        if length == 0 {
            continue;
        }
        // No "excess length" support: data past the command's is refused.
        if *remaining == 0 || u64::MAX - descriptor.address < length {
            return Err(refuse(GenericStatus::DataSglLengthInvalid));
        }
        let here = length.min(*remaining);
        runs.push((descriptor.address, here));
        *remaining -= here;
    }
    Ok(())
}

fn finish(remaining: u64, runs: Vec<Run>) -> Result<Vec<Run>, NvmeStatus> {
    if remaining != 0 {
        return Err(refuse(GenericStatus::DataSglLengthInvalid));
    }
    Ok(runs)
}
