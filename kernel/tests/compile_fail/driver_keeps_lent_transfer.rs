//! A driver keeps the prepared transfer it was lent for one `program` call, to
//! look at after the block layer has completed it: the lent transfer lives only
//! as long as the call, so storing it in the driver is refused (E0521).

use std::sync::Mutex;

use dmakit::block::{
    BlockCommand, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Slot, WriteCache,
};
use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{ByteCount, IoFailure, LentTransfer, Specification};

/// A disk that finishes nothing, and keeps what it was lent.
struct KeepingDisk {
    platform: &'static SimulatedPlatform,
    kept: Mutex<Option<&'static LentTransfer<'static>>>,
}

impl HardwareQueue for KeepingDisk {
    fn shape(&self) -> DiskShape {
        DiskShape {
            driver_name: "KeepingDisk",
            block_size: 512,
            block_count: 64,
            depth: 1,
            max_request_blocks: 8,
            specification: Specification::UNLIMITED_64,
            platform: self.platform,
            write_cache: WriteCache::WriteThrough, byte_count: ByteCount::Reported,
        }
    }
    fn description(&self) -> String {
        String::from("a disk that keeps what it was lent")
    }
    fn program(&self, _slot: Slot, _command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        *self.kept.lock().unwrap() = Some(data);
        Ok(())
    }
    fn program_flush(&self, _slot: Slot) -> Result<(), IoFailure> {
        Ok(())
    }
    fn collect(&self, _finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        DeviceHealth::Running
    }
    fn acknowledge_interrupt(&self) -> bool {
        false
    }
    fn quiesce(&self) -> Quiesced {
        Quiesced::Stopped
    }
    fn reopen(&self) -> Result<(), IoFailure> {
        Ok(())
    }
}

fn main() {
    let disk = KeepingDisk { platform: SimulatedPlatform::leak(16), kept: Mutex::new(None) };
    assert_eq!(disk.shape().depth, 1);
    assert!(disk.kept.lock().unwrap().is_none());
}
