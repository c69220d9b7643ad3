//! What `dma step` says where a learner could misread it: the 32-bit
//! restriction it adds to every disk, and a `dma sync out` that destroyed what
//! the device wrote. Pure, so it is tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The first lines of step 1: what is read, into what, and why it bounces.
/// `address` is the buffer's physical address; the restriction is the shell's,
/// not the disk's (vda's DMA reaches 64 bits, and bounces here all the same).
pub fn prepared_lines(name: &str, lba: u64, sectors: u64, bytes: u64, address: u64, old_byte: u8) -> Vec<String> {
    let placement = match address >= 1 << 32 {
        true => "so that the buffer, above 4 GiB, bounces",
        false => "but the buffer is below 4 GiB (a machine with less memory): it does not bounce",
    };
    alloc::vec![
        format!(
            "step 1 of 3, prepared: a read of {bytes} bytes ({name} {lba}+{sectors}) into a buffer at {address:#x} \
             holding {old_byte:#04x},"
        ),
        format!(
            "  for a device restricted to 32-bit addresses: dma step adds this restriction whatever {name}'s DMA \
             reaches,"
        ),
        format!("  {placement}. The device owns the memory now and was given the bounce buffer."),
    ]
}

/// After `dma sync out`: when the bounce buffer held bytes the device wrote
/// (`device_wrote`) before the sync (`before`) and no longer does after it
/// (`after`), the lines that say so and why; `None` when nothing the device
/// wrote was lost (it had not written yet, or `dma sync in` had already given
/// the CPU's buffer the same bytes).
pub fn sync_out_damage(device_wrote: &[u8], before: &[u8], after: &[u8]) -> Option<Vec<String>> {
    let lost = device_wrote
        .iter()
        .zip(before)
        .zip(after)
        .filter(|((wrote, before), after)| before == wrote && after != wrote)
        .count();
    if lost == 0 {
        return None;
    }
    Some(alloc::vec![
        format!(
            "  the device's data is gone: {lost} of the {} bytes it wrote into the bounce buffer were overwritten",
            device_wrote.len()
        ),
        String::from("  with the CPU's stale buffer, and complete will copy those back. A sync for the device copies"),
        String::from(
            "  buffer -> bounce buffer whatever the device did; once it wrote, only synchronize(In) or complete"
        ),
        String::from(
            "  may copy. Linux's swiotlb made this copy in 2022 for receive buffers, drivers lost data, and the"
        ),
        String::from("  change was reverted (see experiment early-sync)."),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_one_says_the_32_bit_restriction_is_the_shells() {
        let lines = prepared_lines("vda", 8, 8, 4096, 0x1_010b_d000, 0x5a);
        assert_eq!(
            lines[0],
            "step 1 of 3, prepared: a read of 4096 bytes (vda 8+8) into a buffer at 0x1010bd000 holding 0x5a,"
        );
        assert_eq!(
            lines[1],
            "  for a device restricted to 32-bit addresses: dma step adds this restriction whatever vda's DMA reaches,"
        );
        assert!(lines[2].contains("above 4 GiB, bounces"), "{lines:?}");
        let low = prepared_lines("hda", 0, 8, 4096, 0x10_0000, 0x5a);
        assert!(low[2].contains("below 4 GiB") && low[2].contains("does not bounce"), "{low:?}");
    }

    #[test]
    fn sync_out_after_the_device_wrote_says_its_data_is_gone_and_why() {
        let device = [0x08, 0, 0, 0];
        let stale = [0x5a; 4];
        let lines = sync_out_damage(&device, &device, &stale).expect("the device's bytes were overwritten");
        assert!(lines[0].contains("4 of the 4 bytes it wrote"), "{lines:?}");
        let text = lines.join("\n");
        assert!(text.contains("stale") && text.contains("swiotlb") && text.contains("reverted"), "{text}");
    }

    #[test]
    fn sync_out_that_destroys_nothing_says_nothing() {
        let device = [0x08, 0, 0, 0];
        let stale = [0x5a; 4];
        assert_eq!(sync_out_damage(&device, &stale, &stale), None, "the device had not written yet");
        assert_eq!(sync_out_damage(&device, &device, &device), None, "sync in had given the CPU the same bytes");
        let some = sync_out_damage(&device, &device, &[0x08, 0x5a, 0, 0x5a]).expect("two lost");
        assert!(some[0].contains("2 of the 4 bytes"), "{some:?}");
    }
}
