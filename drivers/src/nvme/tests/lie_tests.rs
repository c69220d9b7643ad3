//! Values a controller reports that cannot be, or that the driver read
//! wrong: an MDTS whose transfer size overflows 64 bits means no limit.

use super::*;

/// MDTS 52 and up: 2^MDTS pages of 4 KiB is 2^64 bytes or more, which
/// wrapped to 0: the disk took requests of no bytes at all.
#[test]
fn an_mdts_past_64_bits_of_bytes_is_no_limit() {
    for shift in [52, 53, 63, 64, 255] {
        let platform = SimulatedPlatform::leak(64);
        let mut image = vec![0; (64 * BLOCK) as usize];
        pattern::fill(0, b'N', &mut image);
        let fake = FakeNvme::new(platform, image, 8, false);
        fake.controller.lock().max_transfer_shift = shift;
        let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
        let disk = NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap();
        assert_eq!(disk.link().max_request_bytes, NvmeOptions::DEFAULT.max_request_bytes, "MDTS {shift}");
        let disk = QueuedDisk::new(disk, &WAITER).unwrap();
        let mut target = DmaBuffer::allocate(platform, 8 * BLOCK, IoDirection::InOut, Constraints::NONE).unwrap();
        disk.read(0, 8, &mut target, 0).unwrap();
        assert_eq!(target.to_vec(0, 8 * 512).unwrap(), expected(0, 8), "MDTS {shift}");
    }
}
