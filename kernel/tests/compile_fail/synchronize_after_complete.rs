//! A driver synchronizes a transfer it already completed (its bounce memory is
//! freed by then): `complete` took the transfer, so this is refused (E0382).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, Specification, SyncOptions, TransferOptions};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let mut transfer = DmaTransfer::prepare(command, buffer, 0, 0, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .unwrap();
    let completed = transfer.complete(4096);
    transfer.synchronize(SyncOptions::OUT).unwrap();
    completed.result.unwrap();
}
