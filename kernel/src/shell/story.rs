//! What `make run` shows after boot: one real bounced transfer, told in plain
//! words, with the DMA layer's own trace in the middle.

use alloc::vec;

use crate::digest::sha256_hex;
use crate::dma::kernel_platform::platform;
use crate::dma::{DmaBuffer, DmaPlatform, IoDirection, trace};
use crate::memory::Constraints;
use crate::{driver, pattern, println};

/// Narrates a 32-bit ATA read of 8 sectors into a buffer above 4 GiB.
pub fn narrate_one_transfer() {
    let Some(disk) = driver::find_block_device("hda") else {
        println!("(no ATA disk attached: attach one with ATA_DISK= to see a bounced transfer)");
        return;
    };
    let Ok(mut buffer) = DmaBuffer::allocate(platform(), 4096, IoDirection::In, Constraints::NONE) else {
        println!("(no memory for the story's buffer)");
        return;
    };
    let address = buffer.descriptor().physical_segment(0).map(|(address, _)| address.as_u64()).unwrap_or(0);
    let translated = crate::iommu::live_mappings() > 0;
    println!();
    println!("== One DMA transfer, step by step ==");
    println!("The IDE controller (PIIX) is a 32-bit bus master: it cannot reach memory above 4 GiB.");
    println!("We read 8 sectors (4096 bytes) of hda into a buffer at physical {address:#x},");
    if address < 1 << 32 {
        println!("which is below 4 GiB on this machine (boot with MEM=6G to see bouncing).");
    } else if translated {
        println!("above 4 GiB. This machine has an IOMMU (Intel VT-d): the controller sees I/O virtual");
        println!("addresses, which the IOMMU translates, so the command maps the buffer's page at an");
        println!("IOVA below 4 GiB instead of bouncing it, and unmaps it at complete:");
    } else {
        println!("above 4 GiB. The disk's IoDmaCommand knows the controller's limits, so:");
    }
    let before = platform().accounting().stats();
    let was_on = trace::set_enabled(true);
    let result = disk.read(0, 8, &mut buffer, 0);
    trace::set_enabled(was_on);
    if let Err(error) = result {
        println!("the read failed: {error}");
        return;
    }
    let after = platform().accounting().stats();
    let back = after.bytes_from_bounce - before.bytes_from_bounce;
    let filled = after.bytes_to_bounce - before.bytes_to_bounce;
    if back > 0 {
        println!("The device wrote into the bounce buffer below 4 GiB; complete() copied those");
        println!("{back} bytes up into our buffer and freed the bounce page. That copy is bouncing.");
        if filled > 0 {
            println!("prepare() filled the bounce page from our buffer first: the controller says only");
            println!("\"done\", never how many bytes it wrote, so a byte it skipped comes back as ours,");
            println!("not as whatever the page held for its last owner.");
        }
    } else if translated && address >= 1 << 32 {
        println!("Nothing was bounced: through the IOMMU the 32-bit device wrote straight into our buffer");
        println!("above 4 GiB (zero copies). After complete its IOVA leads nowhere: see `iommu`.");
    } else {
        println!("Nothing needed bouncing: the device wrote straight into our buffer (zero copies).");
    }
    let mut data = vec![0; 4096];
    let mut expected = vec![0; 4096];
    pattern::fill(0, b'A', &mut expected);
    let check = match buffer.read_bytes(0, &mut data) {
        Ok(_) if data == expected => "matches the test pattern of a dmakit disk image",
        Ok(_) => "is not dmakit's test pattern (your own image?)",
        Err(_) => "could not be read back",
    };
    println!("Data check: the buffer {check}; sha256 {}", &sha256_hex(&data)[..16]);
    if translated {
        println!("Try: iommu, dma read hda 0 8 --above-4g --trace, iommu break BB:DD.F, and docs/iommu.md.");
    } else {
        println!("Try: help, dma read hda 0 8 --above-4g --trace, and docs/tour.md.");
    }
}
