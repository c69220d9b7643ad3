//! The known pattern test disks are filled with, so a test can check any sector
//! it reads without a copy of the image. `boot/qemu-run` writes the same bytes
//! when it creates the disk images.
//!
//! Sector `lba` of a disk tagged `tag`:
//! bytes 0..8 = `lba` (little-endian), 8..16 = `"DMAKIT"`, `tag`, `'\n'`,
//! and byte `j` from 16 on = `(31 * lba + 7 * j) mod 256`.

/// Bytes per pattern sector.
pub const SECTOR: usize = 512;

/// Writes sector `lba`'s pattern into `output` (at most 512 bytes).
pub fn sector(lba: u64, tag: u8, output: &mut [u8]) {
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&lba.to_le_bytes());
    head[8..14].copy_from_slice(b"DMAKIT");
    head[14] = tag;
    head[15] = b'\n';
    let base = (lba as u8).wrapping_mul(31);
    for (j, byte) in output.iter_mut().enumerate().take(SECTOR) {
        *byte = if j < 16 { head[j] } else { base.wrapping_add((j as u8).wrapping_mul(7)) };
    }
}

/// Fills `output` with the pattern of consecutive sectors from `first_lba`.
pub fn fill(first_lba: u64, tag: u8, output: &mut [u8]) {
    for (index, chunk) in output.chunks_mut(SECTOR).enumerate() {
        sector(first_lba + index as u64, tag, chunk);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sectors_differ_and_carry_their_number() {
        let mut a = [0u8; 512];
        let mut b = [0u8; 512];
        super::sector(1, b'V', &mut a);
        super::sector(2, b'V', &mut b);
        assert_ne!(a, b);
        assert_eq!(&a[..8], &1u64.to_le_bytes());
        assert_eq!(&a[8..16], b"DMAKITV\n");
        assert_eq!(a[16], 31u8.wrapping_add(112));
    }
}
