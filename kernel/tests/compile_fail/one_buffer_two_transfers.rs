//! One buffer moved into two transfers, for two devices at once: the first
//! transfer owns it, so the second `prepare` is refused (E0382).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, Specification, TransferOptions};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    let first_command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let second_command = IoDmaCommand::new(platform, Specification::UNLIMITED_64).unwrap();
    let options = TransferOptions::default();
    let first = DmaTransfer::prepare(first_command, buffer, 0, 0, &options).map_err(|refused| refused.failure).unwrap();
    let second =
        DmaTransfer::prepare(second_command, buffer, 0, 0, &options).map_err(|refused| refused.failure).unwrap();
    first.complete(4096).result.unwrap();
    second.complete(4096).result.unwrap();
}
