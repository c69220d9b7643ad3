//! The owner of the slots completes a slot while its transfer is still lent
//! (a driver's call still running with it): completing needs the slots
//! exclusively, and the loan borrows them, so this is refused (E0502).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, IoDirection, Specification, TransferOptions, TransferSlots};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let mut slots = TransferSlots::new(platform, Specification::UNLIMITED_32, 2).unwrap();
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    slots
        .prepare(0, buffer, (0, 0), IoDirection::Out, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .unwrap();
    let lent = slots.lend(0).unwrap();
    let completed = slots.complete(0, 4096).unwrap();
    assert_eq!(lent.segments().len(), 1);
    completed.result.unwrap();
}
