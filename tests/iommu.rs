//! Test kernel (q35): DMA through the Intel VT-d IOMMU. The PIIX IDE disk and the
//! modern virtio disk are translated; the legacy virtio disk bypasses the IOMMU.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::BlockDevice;
use dmakit::digest::sha256_hex;
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{Cause, DmaBuffer, DmaPlatform, FaultAccess, IoDirection, IoMemoryDescriptor, IoReturn};
use dmakit::iommu::{self, Experiment};
use dmakit::memory::Constraints;
use dmakit::pci::{self, PciDevice};
use dmakit::{driver, pattern, println};
use spin::Once;
use x86_64::PhysAddr;

dmakit::machine!(q35);

dmakit::test_kernel!(
    the_iommu_is_on_and_covers_the_translated_disks,
    hda_and_vdb_read_through_the_iommu_byte_exact,
    a_32_bit_ide_controller_reads_above_4_gib_without_a_bounce,
    a_scattered_buffer_reaches_the_device_as_fewer_segments_than_pages,
    writes_through_the_iommu_reach_the_image_files,
    a_dma_to_an_unmapped_iova_is_a_fault_and_memory_is_untouched,
    the_legacy_virtio_disk_bypasses_the_iommu_with_physical_addresses,
    the_shell_breaks_a_transfer_and_the_fault_log_shows_it,
);

const FOUR_GIB: u64 = 1 << 32;

struct Disks {
    ata: Arc<dyn BlockDevice>,
    modern: Arc<dyn BlockDevice>,
    legacy: Arc<dyn BlockDevice>,
}

static DISKS: Once<Disks> = Once::new();

fn disks() -> &'static Disks {
    DISKS.call_once(|| {
        driver::attach(&dmakit_drivers::all());
        let find = |name| driver::find_block_device(name).unwrap_or_else(|| panic!("{name} attached"));
        Disks { ata: find("hda"), modern: find("vdb"), legacy: find("vda") }
    })
}

/// The translated disks: name for host checks, pattern tag, disk.
fn translated() -> [(&'static str, u8, &'static Arc<dyn BlockDevice>); 2] {
    let disks = disks();
    [("ata", b'A', &disks.ata), ("modern", b'M', &disks.modern)]
}

fn pci_function(vendor: u16, device: u16) -> PciDevice {
    pci::enumerate()
        .into_iter()
        .find(|function| (function.vendor_id, function.device_id) == (vendor, device))
        .expect("the q35 machine has this function")
}

fn buffer(bytes: u64, placement: Constraints) -> DmaBuffer {
    DmaBuffer::allocate(platform(), bytes, IoDirection::InOut, placement).expect("buffer")
}

fn expected(lba: u64, sectors: u64, tag: u8) -> Vec<u8> {
    let mut bytes = vec![0; (sectors * 512) as usize];
    pattern::fill(lba, tag, &mut bytes);
    bytes
}

/// Runs `body` and checks that it left no IOVA mapped (the rings and tables the
/// drivers keep for their devices' lives stay, and are counted before).
fn leaves_no_mapping(body: impl FnOnce()) {
    let before = iommu::live_mappings();
    body();
    assert_eq!(iommu::live_mappings(), before, "a transfer left pages mapped");
}

fn the_iommu_is_on_and_covers_the_translated_disks() {
    disks();
    let report = iommu::report();
    for line in &report {
        println!("{line}");
    }
    let ide = pci_function(0x8086, 0x7010);
    let modern = pci_function(0x1af4, 0x1042);
    assert!(iommu::mapper_for(ide.requester_id()).is_some(), "the IDE controller is behind the IOMMU");
    assert!(iommu::mapper_for(modern.requester_id()).is_some(), "the modern virtio disk is behind the IOMMU");
    assert!(report.iter().any(|line| line.contains("0xfed90000")), "{report:?}");
}

fn hda_and_vdb_read_through_the_iommu_byte_exact() {
    let mut target = buffer(256 * 512, Constraints::NONE);
    for (name, tag, disk) in translated() {
        leaves_no_mapping(|| {
            for lba in (0..4096).step_by(256) {
                disk.read(lba, 256, &mut target, 0).expect("read");
                let got = target.to_vec(0, 256 * 512).expect("read_bytes");
                assert!(got == expected(lba, 256, tag), "{name}: mismatch at {lba}");
            }
        });
    }
}

fn a_32_bit_ide_controller_reads_above_4_gib_without_a_bounce() {
    let mut target = buffer(128 * 512, Constraints::NONE);
    let physical = target.descriptor().physical_segment(0).expect("mapped").0.as_u64();
    assert!(physical >= FOUR_GIB, "the buffer is above 4 GiB");
    let disk = &disks().ata;
    leaves_no_mapping(|| {
        let before = platform().accounting().stats();
        disk.read(500, 128, &mut target, 0).expect("read");
        let after = platform().accounting().stats();
        assert_eq!(after.bytes_from_bounce, before.bytes_from_bounce, "nothing was bounced");
        assert_eq!(after.bounced_transfers, before.bounced_transfers, "nothing was bounced");
        let segments = disk.last_segments();
        assert!(segments.iter().all(|segment| segment.end() <= FOUR_GIB), "IOVAs below 4 GiB: {segments:?}");
        println!("buffer at {physical:#x}, device given {segments:x?}");
        assert!(target.to_vec(0, 128 * 512).expect("read_bytes") == expected(500, 128, b'A'));
    });
}

fn a_scattered_buffer_reaches_the_device_as_fewer_segments_than_pages() {
    // Eight pages from alternating zones: no two are physical neighbours.
    let high = Constraints::NONE;
    let low = Constraints::below(PhysAddr::new(FOUR_GIB));
    let pieces: Vec<(u64, Constraints)> = (0..8).map(|page| (4096, if page % 2 == 0 { high } else { low })).collect();
    let descriptor = IoMemoryDescriptor::allocate_scattered(platform(), &pieces, IoDirection::InOut).expect("buffer");
    let mut target = DmaBuffer::from_descriptor(descriptor).expect("sole owner");
    for (name, tag, disk) in translated() {
        leaves_no_mapping(|| {
            disk.read(2000, 64, &mut target, 0).expect("read");
            let segments = disk.last_segments();
            println!("{name}: 8 scattered pages reached the device as {} segment(s): {segments:x?}", segments.len());
            assert!(segments.len() < 8, "{name}: {segments:?}");
            assert!(target.to_vec(0, 64 * 512).expect("read_bytes") == expected(2000, 64, tag), "{name}");
        });
    }
}

fn writes_through_the_iommu_reach_the_image_files() {
    let mut source = buffer(32 * 512, Constraints::NONE);
    let mut target = buffer(32 * 512, Constraints::NONE);
    for (name, _, disk) in translated() {
        leaves_no_mapping(|| {
            let data: Vec<u8> = (0..32 * 512).map(|i| (i as u8).wrapping_mul(13) ^ name.len() as u8).collect();
            source.write_bytes(0, &data).expect("fill");
            disk.write(20_000, 32, &mut source, 0).expect("write");
            disk.read(20_000, 32, &mut target, 0).expect("read");
            assert!(target.to_vec(0, data.len()).expect("read_bytes") == data, "{name}");
            println!("host-check {name} 20000 32 {}", sha256_hex(&data));
        });
    }
}

fn a_dma_to_an_unmapped_iova_is_a_fault_and_memory_is_untouched() {
    let mut target = buffer(16 * 512, Constraints::NONE);
    let canary = vec![0x5a; 16 * 512];
    let ide = pci_function(0x8086, 0x7010);
    let disk = &disks().ata;
    leaves_no_mapping(|| {
        target.write_bytes(0, &canary).expect("fill");
        // The device is handed IOVAs that are unmapped right after mapping: what
        // it meets when a driver completes too early or reuses old segments.
        iommu::set_experiment(ide.requester_id(), Experiment::UnmapBeforeTheDevice).expect("experiment");
        let failure = disk.read(40, 16, &mut target, 0).unwrap_err();
        println!("{failure}");
        assert_eq!(failure.code(), IoReturn::DmaError);
        let Cause::IommuFault(fault) = failure.cause() else { panic!("not an IOMMU fault: {failure}") };
        assert_eq!(fault.source, ide.requester_id(), "the fault names the IDE controller");
        assert_eq!(fault.access, FaultAccess::Write, "a disk read writes memory");
        assert!(matches!(fault.reason, 0x05 | 0x07), "reason {:#x}", fault.reason);
        assert!(target.to_vec(0, canary.len()).expect("read_bytes") == canary, "memory untouched");
        // The experiment was one transfer long: the next read works.
        disk.read(40, 16, &mut target, 0).expect("read after the experiment");
        assert!(target.to_vec(0, 16 * 512).expect("read_bytes") == expected(40, 16, b'A'));
    });
}

fn the_legacy_virtio_disk_bypasses_the_iommu_with_physical_addresses() {
    let mut target = buffer(8 * 512, Constraints::NONE);
    let physical = target.descriptor().physical_segment(0).expect("mapped").0.as_u64();
    let disk = &disks().legacy;
    leaves_no_mapping(|| {
        disk.read(7, 8, &mut target, 0).expect("read");
        assert_eq!(disk.last_segments()[0].address.as_u64(), physical, "legacy virtio is given physical addresses");
        assert!(target.to_vec(0, 8 * 512).expect("read_bytes") == expected(7, 8, b'V'));
    });
}

fn the_shell_breaks_a_transfer_and_the_fault_log_shows_it() {
    disks();
    let ide = pci_function(0x8086, 0x7010);
    assert!(dmakit::shell::execute("iommu break 99:00.0").is_err(), "an absent function is refused");
    let refused = dmakit::shell::execute("iommu break 00:00.0").expect_err("the host bridge has no disk");
    assert!(refused.contains("has no disk"), "{refused}");
    let report = iommu::report();
    assert!(!report.iter().any(|line| line.contains("device 00:00.0")), "no domain made for it: {report:?}");
    dmakit::shell::execute(&alloc::format!("iommu break {}", ide.location())).expect("armed");
    let error = dmakit::shell::execute("read hda 0 1").expect_err("the broken read fails");
    println!("{error}");
    assert!(error.contains("IOMMU fault"), "{error}");
    let report = iommu::report();
    assert!(report.iter().any(|line| line.contains("IOMMU fault") && line.contains(&ide.location())), "{report:?}");
    dmakit::shell::execute("read hda 0 1").expect("the next read works");
}
