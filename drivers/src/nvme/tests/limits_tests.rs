//! The limits the driver reports match what it can describe: a PRP-only
//! controller's requests may have as many segments as the slot's PRP list
//! chain holds (within the pages a request spans), one with SGLs no more than
//! its SGL descriptors hold as well; MDTS bounds both.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::HardwareQueue;
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{CoherentMemory, IoDirection, Specification};

use super::super::data_pointer::{DataPointerChoice, ListArea, PrpCheck, build_prps, build_sgl};
use super::super::fake::{BLOCK, FAKE_REGISTER_BYTES, FakeNvme, FakeRegisters};
use super::super::registers::PAGE_SIZE;
use super::super::{Controller, NvmeDisk, NvmeOptions};
use super::BLOCKS;
use super::walk_tests::{merged, pages, scattered, walk};
use crate::test_support::WAITER;

/// A disk on a controller with SGLs as `sgl` says and MDTS `mdts` (0: no
/// limit), asked for requests of `max_request_bytes`.
fn disk(platform: &'static SimulatedPlatform, sgl: bool, mdts: u8, max_request_bytes: u64) -> NvmeDisk<FakeRegisters> {
    let fake = FakeNvme::new(platform, vec![0; (BLOCKS * BLOCK) as usize], 64, sgl);
    fake.controller.lock().max_transfer_shift = mdts;
    let controller = Controller::new(Arc::new(FakeRegisters(fake)), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let options = NvmeOptions { max_request_bytes, ..NvmeOptions::DEFAULT };
    NvmeDisk::new(controller, platform, options).unwrap()
}

#[test]
fn max_segments_is_what_the_prp_chain_or_the_sgl_describes_for_sgl_and_prp_only_controllers() {
    let platform = SimulatedPlatform::leak(64);
    let page = Specification { alignment: PAGE_SIZE, ..Specification::UNLIMITED_64 };
    // (SGLs, MDTS, requested size): segments, list pages per slot.
    let cases = [
        ((false, 0, 1 << 20), 257, 1),
        ((true, 0, 1 << 20), 256, 1),
        ((false, 3, 1 << 20), 9, 1),
        ((true, 3, 1 << 20), 9, 1),
        ((false, 0, 4 << 20), 1025, 3),
        ((true, 0, 4 << 20), 768, 3),
    ];
    for ((sgl, mdts, requested), segments, list_pages) in cases {
        let disk = disk(platform, sgl, mdts, requested);
        let link = disk.link().clone();
        let what = (sgl, mdts, requested);
        assert_eq!((link.max_segments, link.list_pages), (segments, list_pages), "{what:?}");
        assert_eq!(disk.shape().specification.max_segments, segments, "{what:?}: the shape says it");
        // As many segments as reported, scattered, at most a request long:
        // the slot's list pages describe them on every path the controller
        // takes, and the walk finds exactly them.
        let memory = pages(platform, segments);
        let tail = (segments as u64 * PAGE_SIZE).saturating_sub(link.max_request_bytes + 0x200);
        let buffer = scattered(&memory, 0x200, tail.min(PAGE_SIZE - 4));
        let length: u64 = buffer.iter().map(|segment| segment.length).sum();
        assert!(length <= link.max_request_bytes, "{what:?}: {length} bytes");
        let lists = CoherentMemory::allocate(platform, list_pages as u64 * PAGE_SIZE, page).unwrap();
        let area = ListArea { memory: &lists, offset: 0, pages: list_pages };
        let wanted = merged(buffer.iter().map(|segment| (segment.address.as_u64(), segment.length)));
        let prps = build_prps(&buffer, IoDirection::In, PrpCheck::Rules, &area).unwrap();
        assert_eq!(merged(walk(platform, prps, length).unwrap()), wanted, "{what:?}: PRPs");
        if let DataPointerChoice::SglFrom(_) = link.choice {
            let sgls = build_sgl(&buffer, IoDirection::In, &area).unwrap();
            assert_eq!(merged(walk(platform, sgls, length).unwrap()), wanted, "{what:?}: SGL");
            if segments == list_pages * 256 {
                // The SGL is the bound here: one more does not fit.
                let more: Vec<_> = scattered(&pages(platform, segments + 1), 0, 0);
                assert!(build_sgl(&more, IoDirection::In, &area).is_err(), "{what:?}: one more segment");
            }
        }
        lists.release().unwrap();
        memory.into_iter().for_each(|page| page.release().unwrap());
    }
}
