//! `experiment prp-offset` against the fake controller: a read whose second
//! PRP entry starts inside a page reaches the controller only with both
//! safety steps switched off for it (the DMA layer's bounce for the internal
//! alignment, the driver's own PRP check), and then the controller refuses it
//! as QEMU does, PRP Offset Invalid, having written nothing. Both steps are on
//! again for the next transfer.

use dmakit::block::BlockDevice;
use dmakit::dma::experiment::{self, Skip};
use dmakit::dma::hooks::{DriverCheck, Site};
use dmakit::dma::{
    Cause, DmaBuffer, DmaPlatform, GenericStatus, IoDirection, IoMemoryDescriptor, NvmeCause, NvmeStatus, PrpRule,
};
use dmakit::memory::Constraints;

use super::{Setup, expected, setup_with};
use crate::nvme::structures::{IO_READ, PSDT_PRP};

/// Where the experiment reads.
const LBA: u64 = 40;
/// 8 KiB: 16 blocks of 512 bytes.
const BLOCKS: u64 = 16;
/// What the buffer holds before the read.
const OLD_BYTE: u8 = 0x5a;
/// What the bytes of the buffer's pages outside the buffer hold.
const CANARY: u8 = 0xc5;

/// The experiment's buffer: 2 KiB at the end of one page, then 6 KiB starting
/// 2 KiB into another (the second PRP entry starts inside its page). Returns
/// it with the physical start of each piece; the bytes before each piece in
/// its page are canaries.
fn two_pieces(setup: &Setup) -> (DmaBuffer, [u64; 2]) {
    let pieces = [(0x800, 0x800, Constraints::NONE), (0x800, 0x1800, Constraints::NONE)];
    let descriptor = IoMemoryDescriptor::allocate_scattered_at(setup.platform, &pieces, IoDirection::In).unwrap();
    let starts = [0, 0x800].map(|offset| descriptor.physical_segment(offset).unwrap().0.as_u64());
    let mut buffer = DmaBuffer::from_descriptor(descriptor).unwrap();
    buffer.write_bytes(0, &[OLD_BYTE; 0x2000]).unwrap();
    for start in starts {
        setup.platform.device_write(start - 0x800, &[CANARY; 0x800]);
    }
    (buffer, starts)
}

/// Whether the buffer and the canaries around it hold what they held.
fn untouched(setup: &Setup, buffer: &DmaBuffer, starts: [u64; 2]) -> bool {
    let canaries = starts.iter().all(|start| {
        let mut canary = [0u8; 0x800];
        setup.platform.device_read(start - 0x800, &mut canary);
        canary == [CANARY; 0x800]
    });
    canaries && buffer.to_vec(0, 0x2000).unwrap() == [OLD_BYTE; 0x2000]
}

fn offset_invalid() -> Cause {
    let status = NvmeStatus::Generic(GenericStatus::PrpOffsetInvalid);
    Cause::Nvme(NvmeCause::Status { status, do_not_retry: true })
}

#[test]
fn with_both_steps_off_the_controller_answers_prp_offset_invalid_and_writes_nothing() {
    let setup = setup_with(64, false);
    let (mut buffer, starts) = two_pieces(&setup);
    setup.platform.accounting().arm_experiment(Skip::InternalAlignment);
    experiment::arm_check(setup.disk.hooks_site(), DriverCheck::PrpRules);
    let failure = setup.disk.read(LBA, BLOCKS, &mut buffer, 0).unwrap_err();
    assert_eq!(failure.cause(), offset_invalid(), "{failure}");
    assert!(failure.to_string().contains("PRP Offset Invalid"), "{failure}");
    let logged = *setup.fake.log.lock().last().unwrap();
    assert_eq!(logged, (1, IO_READ, PSDT_PRP, Some(NvmeStatus::Generic(GenericStatus::PrpOffsetInvalid))));
    let given: Vec<(u64, u64)> =
        setup.disk.last_segments().iter().map(|segment| (segment.address.as_u64(), segment.length)).collect();
    assert_eq!(given, [(starts[0], 0x800), (starts[1], 0x1800)], "the pieces went to the controller as they are");
    assert!(untouched(&setup, &buffer, starts), "the controller wrote nothing, inside the buffer or around it");
    assert!(!setup.platform.accounting().disarm_experiment(), "the DMA layer's step was used by this transfer");
    assert!(!experiment::disarm_check(setup.disk.hooks_site()), "the driver's check was used by this transfer");
}

#[test]
fn after_one_transfer_the_driver_refuses_the_same_buffer_again_and_the_dma_layer_bounces_it() {
    let setup = setup_with(64, false);
    let (mut buffer, starts) = two_pieces(&setup);
    setup.platform.accounting().arm_experiment(Skip::InternalAlignment);
    experiment::arm_check(setup.disk.hooks_site(), DriverCheck::PrpRules);
    setup.disk.read(LBA, BLOCKS, &mut buffer, 0).unwrap_err();
    let reached = setup.fake.log.lock().len();
    // The driver's check is on again: with the DMA layer's step off once more,
    // the segments break the PRP rule and the driver refuses them itself.
    setup.platform.accounting().arm_experiment(Skip::InternalAlignment);
    let failure = setup.disk.read(LBA, BLOCKS, &mut buffer, 0).unwrap_err();
    let broken = NvmeCause::PrpRuleBroken { index: 1, rule: PrpRule::InnerStartsOnPage };
    assert_eq!(failure.cause(), Cause::Nvme(broken), "{failure}");
    // The check skipped for another disk leaves this one's on.
    let other = 0u8;
    setup.platform.accounting().arm_experiment(Skip::InternalAlignment);
    experiment::arm_check(Site::of(&other), DriverCheck::PrpRules);
    let failure = setup.disk.read(LBA, BLOCKS, &mut buffer, 0).unwrap_err();
    assert_eq!(failure.cause(), Cause::Nvme(broken), "{failure}");
    assert!(experiment::disarm_check(Site::of(&other)));
    assert_eq!(setup.fake.log.lock().len(), reached, "neither reached the controller");
    assert!(untouched(&setup, &buffer, starts));
    // With both steps on, the DMA layer bounces the second piece to a page
    // and the controller gets a list it takes.
    setup.disk.read(LBA, BLOCKS, &mut buffer, 0).unwrap();
    assert_eq!(buffer.to_vec(0, 0x2000).unwrap(), expected(LBA, BLOCKS));
    let segments = setup.disk.last_segments();
    assert!(segments[1..].iter().all(|segment| segment.address.as_u64() % 4096 == 0), "{segments:?}");
    assert_eq!(setup.fake.log.lock().last().unwrap().3, None);
}
