//! The AHCI driver against an HBA and a drive that say things they should
//! not: ports implemented past the registers mapped, IDENTIFY sector counts at
//! and past their edges.

use super::*;

/// A fake HBA with QEMU's 4 KiB ABAR that says (PI bit 31) it has a port whose
/// registers (0x1080-0x10ff) lie past it: the port is skipped, with no
/// access past the ABAR (which on the machine trips the MMIO window's assert).
#[test]
fn a_port_implemented_past_the_mapped_registers_is_skipped() {
    let platform = SimulatedPlatform::leak(64);
    let image = vec![0; (SECTORS * SECTOR_SIZE) as usize];
    let model = String::from("FAKE SATA DISK");
    let identity = DriveIdentity { sectors: SECTORS, ncq: true, queue_depth: 32, model, flush: CacheFlush::NoCache };
    let fake = FakeHba::new(platform, true, FakeDisk { image, identity });
    fake.ports_implemented.store(1 << 31 | 0b11, Ordering::Relaxed);
    fake.abar_bytes.store(0x1000, Ordering::Relaxed);
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let hba = Hba::reset(registers, 0x1000, &WAITER).unwrap();
    assert_eq!(hba.ports_with_device(), vec![0], "port 31 skipped, port 1 empty");
    let outside = Cause::OutOfRange { offset: 0x1080, length: 0x80, size: 0x1000 };
    assert_eq!(hba.port_outside_registers(31), Some(outside));
    assert_eq!(hba.port_outside_registers(29), None, "port 29 ends at 0x1000");
}
