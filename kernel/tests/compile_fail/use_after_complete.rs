//! A driver looks at a transfer's segments after completing it: `complete`
//! takes the transfer by value, so it is gone (E0382).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, Specification, TransferOptions};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(command, buffer, 0, 0, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .unwrap();
    let completed = transfer.complete(4096);
    let segment = transfer.segments()[0];
    completed.result.unwrap();
    assert_eq!(segment.length, 4096);
}
