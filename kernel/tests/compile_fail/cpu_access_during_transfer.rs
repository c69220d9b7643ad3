//! The CPU reads a buffer while a device owns it: the transfer borrows the
//! buffer exclusively until `complete`, so the read is refused (E0502).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand, Specification, TransferOptions};
use dmakit::memory::Constraints;

fn main() {
    let platform = SimulatedPlatform::leak(16);
    let mut buffer = DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
    let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
    let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default())
        .map_err(|refused| refused.failure)
        .unwrap();
    let segment = transfer.segments()[0];
    platform.device_write(segment.address.as_u64(), &[7; 4096]);
    let mut peek = [0u8; 16];
    buffer.read_bytes(0, &mut peek).unwrap();
    transfer.complete(4096).result.unwrap();
    assert_eq!(peek, [7; 16]);
}
