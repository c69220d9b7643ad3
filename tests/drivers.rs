//! Test kernel: the virtio-blk and PIIX ATA drivers on QEMU's real (emulated)
//! devices, with the runner's pattern-filled disk images attached.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::block::{BlockDevice, BlockOperation, DoubleBuffering, TransferOptions};
use dmakit::digest::sha256_hex;
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{Cause, DmaBuffer, DmaPlatform, IoDirection, IoReturn, Specification};
use dmakit::memory::Constraints;
use dmakit::testing::random::Random;
use dmakit::{driver, pattern, println};
use spin::Once;
use x86_64::PhysAddr;

dmakit::test_kernel!(
    the_registry_lists_both_devices_with_their_drivers,
    every_block_of_the_first_4_mib_reads_back_byte_exact,
    buffers_above_4_gib_bounce_for_ata_but_not_for_virtio,
    forced_double_buffering_gives_the_same_bytes,
    transfers_across_many_pages_respect_the_64_kib_rule,
    requests_past_the_end_fail_and_leave_the_disk_usable,
    writes_read_back_and_reach_the_image_files,
    a_thousand_random_transfers_match,
    a_bounced_read_gives_back_every_page_and_reports_nothing,
);

const FOUR_GIB: u64 = 1 << 32;

struct Disks {
    virtio: Arc<dyn BlockDevice>,
    ata: Arc<dyn BlockDevice>,
}

static DISKS: Once<Disks> = Once::new();

fn disks() -> &'static Disks {
    DISKS.call_once(|| {
        driver::attach(&dmakit_drivers::all());
        let virtio = driver::find_block_device("vda").expect("vda attached");
        let ata = driver::find_block_device("hda").expect("hda attached");
        Disks { virtio, ata }
    })
}

fn both() -> [(&'static str, u8, &'static Arc<dyn BlockDevice>); 2] {
    let disks = disks();
    [("virtio", b'V', &disks.virtio), ("ata", b'A', &disks.ata)]
}

/// Whether the disk's controller sits behind a translating IOMMU (on q35 the
/// IDE controller does; the legacy virtio disk never does): its buffers above
/// 4 GiB are then mapped, not bounced.
fn translated(name: &str) -> bool {
    name == "ata"
        && dmakit::pci::enumerate()
            .into_iter()
            .find(|function| (function.vendor_id, function.device_id) == (0x8086, 0x7010))
            .is_some_and(|function| dmakit::iommu::mapper_for(function.requester_id()).is_some())
}

fn buffer(bytes: u64, placement: Constraints) -> DmaBuffer {
    DmaBuffer::allocate(platform(), bytes, IoDirection::InOut, placement).expect("buffer")
}

fn read_back(buffer: &DmaBuffer, offset: u64, length: usize) -> Vec<u8> {
    buffer.to_vec(offset, length).expect("read_bytes")
}

fn expected(lba: u64, sectors: u64, tag: u8) -> Vec<u8> {
    let mut bytes = vec![0; (sectors * 512) as usize];
    pattern::fill(lba, tag, &mut bytes);
    bytes
}

fn the_registry_lists_both_devices_with_their_drivers() {
    disks();
    let lines = driver::registry_lines();
    println!();
    let has = |needle: &str| lines.iter().any(|line| line.contains(needle));
    assert!(has("8086:7010") && has("PiixAta") && has("hda"), "{lines:#?}");
    assert!(has("1af4:1001") && has("VirtioBlock") && has("vda"), "{lines:#?}");
    // The host bridge (8086:1237 on pc, 8086:29c0 on q35) has no driver.
    assert!(has("8086:1237") || has("8086:29c0"), "a device without a driver stays listed");
    driver::print_registry();
}

fn every_block_of_the_first_4_mib_reads_back_byte_exact() {
    let mut target = buffer(256 * 512, Constraints::NONE);
    for (name, tag, disk) in both() {
        for lba in (0..8192).step_by(256) {
            disk.read(lba, 256, &mut target, 0).expect("read");
            assert!(read_back(&target, 0, 256 * 512) == expected(lba, 256, tag), "{name}: mismatch at {lba}");
        }
    }
}

fn buffers_above_4_gib_bounce_for_ata_but_not_for_virtio() {
    let mut target = buffer(64 * 512, Constraints::NONE);
    assert!(target.descriptor().physical_segment(0).expect("mapped").0.as_u64() >= FOUR_GIB);
    for (name, tag, disk) in both() {
        let before = platform().accounting().stats();
        disk.read(100, 64, &mut target, 0).expect("read");
        let after = platform().accounting().stats();
        let bounced = after.bytes_from_bounce - before.bytes_from_bounce;
        let bounces = name == "ata" && !translated(name);
        assert_eq!(bounced, if bounces { 64 * 512 } else { 0 }, "{name}");
        assert!(disk.last_segments().iter().all(|s| name != "ata" || s.end() <= FOUR_GIB));
        assert!(read_back(&target, 0, 64 * 512) == expected(100, 64, tag), "{name}");
    }
}

fn forced_double_buffering_gives_the_same_bytes() {
    let mut target = buffer(128 * 512, Constraints::below(PhysAddr::new(FOUR_GIB)));
    for (name, tag, disk) in both() {
        let before = platform().accounting().stats();
        disk.set_double_buffering(DoubleBuffering::Forced);
        let result = disk.read(1000, 128, &mut target, 0);
        disk.set_double_buffering(DoubleBuffering::AsNeeded);
        result.expect("read");
        let after = platform().accounting().stats();
        assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, 128 * 512, "{name} bounced everything");
        assert!(read_back(&target, 0, 128 * 512) == expected(1000, 128, tag), "{name}");
    }
}

fn transfers_across_many_pages_respect_the_64_kib_rule() {
    // A 64 KiB-aligned low buffer, used from 62 KiB in: every command straddles
    // 64 KiB lines, so the ATA driver must split its regions there.
    let aligned = Constraints { below: Some(PhysAddr::new(FOUR_GIB)), alignment: 64 * 1024, boundary: 0 };
    let mut target = buffer(600 * 1024, aligned);
    let offset = 62 * 1024;
    for (name, tag, disk) in both() {
        disk.read(77, 1024, &mut target, offset).expect("read");
        assert!(read_back(&target, offset, 1024 * 512) == expected(77, 1024, tag), "{name}");
        let segments = disk.last_segments();
        if name == "ata" {
            assert!(segments.len() > 1, "{name}: {segments:?}");
            for segment in &segments {
                let last = segment.end() - 1;
                assert_eq!(segment.address.as_u64() >> 16, last >> 16, "PRD region {segment:?} crosses 64 KiB");
            }
        }
    }
}

fn requests_past_the_end_fail_and_leave_the_disk_usable() {
    let mut target = buffer(8 * 512, Constraints::NONE);
    for (name, tag, disk) in both() {
        let end = disk.block_count();
        let past_end = disk.read(end - 4, 8, &mut target, 0).unwrap_err();
        assert_eq!(past_end.code(), IoReturn::BadArgument, "{name}");
        assert_eq!(past_end.cause(), Cause::BlocksPastEnd { lba: end - 4, count: 8, blocks: end }, "{name}");
        assert_eq!(disk.read(end, 1, &mut target, 0).map_err(|failure| failure.code()), Err(IoReturn::BadArgument));
        assert_eq!(disk.write(0, 0, &mut target, 0).map_err(|failure| failure.code()), Err(IoReturn::BadArgument));
        let mut write_only = DmaBuffer::allocate(platform(), 512, IoDirection::Out, Constraints::NONE).expect("buffer");
        let wrong_way = disk.read(0, 1, &mut write_only, 0).unwrap_err();
        let needed = Cause::WrongDirection { needed: IoDirection::In, memory: IoDirection::Out };
        assert_eq!((wrong_way.code(), wrong_way.cause()), (IoReturn::BadArgument, needed), "{name}");
        disk.read(end - 8, 8, &mut target, 0).expect("the disk still works");
        assert!(read_back(&target, 0, 8 * 512) == expected(end - 8, 8, tag), "{name}");
    }
}

fn writes_read_back_and_reach_the_image_files() {
    let mut source = buffer(32 * 512, Constraints::NONE);
    let mut target = buffer(32 * 512, Constraints::NONE);
    for (name, _, disk) in both() {
        let data: Vec<u8> = (0..32 * 512).map(|i| (i as u8).wrapping_mul(7) ^ name.len() as u8).collect();
        source.write_bytes(0, &data).expect("fill");
        disk.write(20_000, 32, &mut source, 0).expect("write");
        disk.read(20_000, 32, &mut target, 0).expect("read");
        assert!(read_back(&target, 0, data.len()) == data, "{name}");
        // The runner checks the image file after QEMU exits.
        println!("host-check {name} 20000 32 {}", sha256_hex(&data));
    }
}

fn a_thousand_random_transfers_match() {
    // Reads anywhere in the pattern region, writes into a scratch region whose
    // contents are mirrored in memory.
    const SCRATCH: u64 = 24_576;
    const SCRATCH_SECTORS: u64 = 2048;
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    let mut buffers =
        [buffer(129 * 512, Constraints::NONE), buffer(129 * 512, Constraints::below(PhysAddr::new(FOUR_GIB)))];
    for (name, tag, disk) in both() {
        let mut mirror: Vec<u8> = vec![0; (SCRATCH_SECTORS * 512) as usize];
        disk.read(SCRATCH, SCRATCH_SECTORS, &mut buffer(SCRATCH_SECTORS * 512, Constraints::NONE), 0).expect("scratch");
        pattern::fill(SCRATCH, tag, &mut mirror);
        for round in 0..500 {
            let sectors = 1 + random.below(128);
            let offset = 2 * random.below(256);
            let target = &mut buffers[random.below(2) as usize];
            if random.below(3) == 0 {
                let lba = random.below(SCRATCH_SECTORS - sectors + 1);
                let data: Vec<u8> = (0..sectors * 512).map(|_| random.below(256) as u8).collect();
                target.write_bytes(offset, &data).expect("fill");
                disk.write(SCRATCH + lba, sectors, target, offset).expect("write");
                let start = (lba * 512) as usize;
                mirror[start..start + data.len()].copy_from_slice(&data);
            } else if random.below(2) == 0 {
                let lba = random.below(SCRATCH_SECTORS - sectors + 1);
                disk.read(SCRATCH + lba, sectors, target, offset).expect("read");
                let start = (lba * 512) as usize;
                let wanted = &mirror[start..start + (sectors * 512) as usize];
                assert!(read_back(target, offset, wanted.len()) == wanted, "{name}: round {round}, scratch lba {lba}");
            } else {
                let lba = random.below(SCRATCH - sectors);
                disk.read(lba, sectors, target, offset).expect("read");
                assert!(
                    read_back(target, offset, (sectors * 512) as usize) == expected(lba, sectors, tag),
                    "{name}: round {round}, lba {lba}"
                );
            }
        }
        println!("host-check {name} {SCRATCH} {SCRATCH_SECTORS} {}", sha256_hex(&mirror));
    }
}

fn a_bounced_read_gives_back_every_page_and_reports_nothing() {
    let accounting = platform().accounting();
    // `In`: the device only writes it (an `InOut` buffer would be filled first).
    let mut target = DmaBuffer::allocate(platform(), 64 * 512, IoDirection::In, Constraints::NONE).expect("buffer");
    let narrow = TransferOptions {
        restrict: Some(Specification { num_address_bits: 32, ..Specification::UNLIMITED_64 }),
        force_double_buffer: false,
    };
    for (name, tag, disk) in both() {
        let before = accounting.stats();
        let log_before = accounting.misuse_log().len();
        disk.transfer(BlockOperation::Read, 300, 64, &mut target, 0, &narrow).expect("read");
        let after = accounting.stats();
        // Behind an IOMMU the 32-bit restriction is met by mapping, not bouncing.
        let expected_bounce = if translated(name) { 0 } else { 64 * 512 };
        assert_eq!(after.bytes_from_bounce - before.bytes_from_bounce, expected_bounce, "{name}: the read bounced");
        // The IDE controller does not count the bytes it wrote
        // (`ByteCount::Assumed`): its bounced read is filled first, so a byte
        // it skipped is the buffer's own. virtio counts them: no fill.
        let expected_fill = if name == "ata" { expected_bounce } else { 0 };
        assert_eq!(after.bytes_to_bounce - before.bytes_to_bounce, expected_fill, "{name}: the fill before the read");
        assert_eq!((after.pages_in_use, after.prepared_commands), (before.pages_in_use, before.prepared_commands));
        assert_eq!(accounting.misuse_log().len(), log_before, "{name}: {:?}", accounting.misuse_log());
        assert!(read_back(&target, 0, 64 * 512) == expected(300, 64, tag), "{name}");
    }
}
