//! The AHCI driver against an HBA and a drive that say things they should
//! not: ports implemented past the registers mapped, IDENTIFY sector counts at
//! and past their edges.

use dmakit::dma::{AtaCause, IoFailure};

use super::*;
use crate::ata::identify::{Addressing, identify_words as words};

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

/// Starts port 0 of a fake whose drive answers IDENTIFY with `answer`.
fn port_answering(answer: [u16; 256]) -> Result<AhciPort<FakeRegisters>, IoFailure> {
    let platform = SimulatedPlatform::leak(256);
    let image = vec![0; (SECTORS * SECTOR_SIZE) as usize];
    let model = String::from("FAKE SATA DISK");
    let identity = DriveIdentity { sectors: SECTORS, ncq: true, queue_depth: 32, model, flush: CacheFlush::NoCache };
    let fake = FakeHba::new(platform, true, FakeDisk { image, identity });
    *fake.identify_words.lock() = Some(answer);
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let hba = Hba::reset(registers.clone(), 0x1100, &WAITER).unwrap();
    AhciPort::new(registers, hba.capabilities(), 0, platform, &WAITER)
}

#[test]
fn identify_sector_counts_past_their_words_edges_are_refused() {
    let lba48_max = (1 << 48) - 1;
    let too_large = |word, sectors, max| AtaCause::SectorCountTooLarge { word, sectors, max };
    for (answer, cause) in [
        (words(Addressing::Lba48, 0x0fff_ffff, 1 << 48), too_large(100, 1 << 48, lba48_max)),
        (words(Addressing::Lba48, 0x0fff_ffff, u64::MAX), too_large(100, u64::MAX, lba48_max)),
        (words(Addressing::Lba48, 0x0fff_ffff, 0), AtaCause::NoSectors { word: 100 }),
        (words(Addressing::Lba28, u32::MAX, 1 << 40), too_large(60, u64::from(u32::MAX), 0x0fff_ffff)),
        (words(Addressing::Lba28, 1 << 28, 0), too_large(60, 1 << 28, 0x0fff_ffff)),
        (words(Addressing::Lba28, 0, 1 << 40), AtaCause::NoSectors { word: 60 }),
        // A count that holds, on a drive without the 48-bit commands this
        // driver sends.
        (words(Addressing::Lba28, 0x0fff_ffff, 1 << 40), AtaCause::No48BitCommands),
    ] {
        let failure = port_answering(answer).map(|port| port.identity().sectors).unwrap_err();
        assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
    }
    for (answer, sectors) in
        [(words(Addressing::Lba48, 0x0fff_ffff, lba48_max), lba48_max), (words(Addressing::Lba48, 0, 5000), 5000)]
    {
        assert_eq!(port_answering(answer).map(|port| port.identity().sectors), Ok(sectors));
    }
}

#[test]
fn identify_words_past_the_sector_count_are_checked_too() {
    let good = words(Addressing::Lba48, 0x0fff_ffff, 5000);
    let mut long_sectors = good;
    long_sectors[106] = 0x4000 | 1 << 12;
    long_sectors[117] = 0;
    let mut damaged = good;
    damaged[255] = 0x00a5;
    for (answer, cause) in [
        (long_sectors, AtaCause::LogicalSectorSize { words: 0 }),
        (damaged, AtaCause::IdentifyChecksum { word: 0x00a5 }),
    ] {
        let failure = port_answering(answer).map(|port| port.identity().sectors).unwrap_err();
        assert_eq!(failure, IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
    }
}

#[test]
fn a_word_76_of_ffffh_claims_no_sata_capabilities_so_no_ncq() {
    // ATA8-ACS: word 76 of 0000h or FFFFh says the device claims no Serial
    // ATA capabilities, so its bit 8 (NCQ) is no claim either.
    let mut answer = words(Addressing::Lba48, 0x0fff_ffff, 5000);
    answer[75] = 0xffff;
    answer[76] = 0xffff;
    let port = port_answering(answer).unwrap();
    assert!(!port.uses_ncq());
    answer[76] = 1 << 8;
    let port = port_answering(answer).unwrap();
    assert!(port.uses_ncq());
    assert_eq!(port.identity().queue_depth, 32, "word 75's reserved bits are not read");
    answer[75] = 0;
    assert_eq!(port_answering(answer).unwrap().identity().queue_depth, 1, "bits 4:0 say depth - 1: never 0");
}
