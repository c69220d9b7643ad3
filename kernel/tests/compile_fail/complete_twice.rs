//! A transfer completed twice (say, once by the interrupt handler and once by
//! a timeout): the first `complete` took it, so the second is refused (E0382).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, Specification, TransferOptions};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(command, buffer, 0, 0, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .unwrap();
    let first = transfer.complete(4096);
    let second = transfer.complete(0);
    first.result.unwrap();
    second.result.unwrap();
}
