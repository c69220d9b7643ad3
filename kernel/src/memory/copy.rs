//! The copy routine of the DMA layer's bounce copies.
//!
//! Why not `memcpy`: on `x86_64-unknown-none`, `core`'s `memcpy` comes from
//! `compiler_builtins` and uses `rep movs`, and under QEMU's TCG each iteration of
//! a `rep` instruction is emulated on its own (about 140 MB/s on these machines).
//! A plain loop of aligned 64-bit loads and stores becomes straight-line host
//! code and is several times faster. Volatile accesses keep LLVM from turning
//! the loop back into a `memcpy` call.

/// Words moved per loop iteration.
const UNROLL: usize = 8;
const WORD: usize = size_of::<u64>();

/// Copies `length` bytes from `source` to `destination`.
///
/// A copy of 2, 4 or 8 bytes whose shared-memory side is aligned to its size
/// is made with one load and one store of that width: a ring's index field
/// (virtio's `used.idx`, say) is written by the device while the driver reads
/// it, and a byte-wise copy can see half of an update (0x2aff becoming 0x2b00
/// read as 0x2bff); the same holds for a field the driver writes while the
/// device reads it.
///
/// # Safety
/// As for `core::ptr::copy_nonoverlapping`: both ranges valid, not overlapping.
pub unsafe fn copy_bytes(destination: *mut u8, source: *const u8, length: usize) {
    // SAFETY: forwarded from the caller.
    if unsafe { copy_field(destination, source, length) } {
        return;
    }
    let misaligned = !(source as usize ^ destination as usize).is_multiple_of(WORD);
    if misaligned || length < 2 * UNROLL * WORD {
        // SAFETY: forwarded from the caller.
        unsafe { core::ptr::copy_nonoverlapping(source, destination, length) };
        return;
    }
    // Bytes up to the first word boundary (the same for both: checked above).
    let head = (WORD - source as usize % WORD) % WORD;
    // SAFETY: `head < WORD <= length`: inside both ranges.
    unsafe { core::ptr::copy_nonoverlapping(source, destination, head) };
    let words = (length - head) / WORD;
    // SAFETY: both pointers are now word-aligned, and `words` whole words follow
    // inside both ranges.
    unsafe {
        let from = source.add(head).cast::<u64>();
        let to = destination.add(head).cast::<u64>();
        let mut index = 0;
        while index + UNROLL <= words {
            for word in index..index + UNROLL {
                to.add(word).write_volatile(from.add(word).read_volatile());
            }
            index += UNROLL;
        }
        for word in index..words {
            to.add(word).write_volatile(from.add(word).read_volatile());
        }
    }
    let done = head + words * WORD;
    // SAFETY: the last `length - done < WORD` bytes of both ranges.
    unsafe { core::ptr::copy_nonoverlapping(source.add(done), destination.add(done), length - done) };
}

/// Copies a 2-, 4- or 8-byte field with one access of its width on each side
/// that is aligned to it (an aligned access of up to 8 bytes is single-copy
/// atomic on x86-64); `false`, having copied nothing, for another length or
/// when neither side is aligned.
///
/// # Safety
/// As for [`copy_bytes`].
unsafe fn copy_field(destination: *mut u8, source: *const u8, length: usize) -> bool {
    // SAFETY: forwarded from the caller, for `length` bytes, the width chosen.
    unsafe {
        match length {
            2 => copy_as::<u16>(destination, source),
            4 => copy_as::<u32>(destination, source),
            8 => copy_as::<u64>(destination, source),
            _ => false,
        }
    }
}

/// [`copy_field`] for one width.
///
/// # Safety
/// As for [`copy_bytes`], with `size_of::<T>()` bytes.
unsafe fn copy_as<T: Copy>(destination: *mut u8, source: *const u8) -> bool {
    let aligned = |address: usize| address.is_multiple_of(align_of::<T>());
    let (source_aligned, destination_aligned) = (aligned(source as usize), aligned(destination as usize));
    if !source_aligned && !destination_aligned {
        return false;
    }
    // SAFETY: both ranges hold `size_of::<T>()` valid bytes (the caller's
    // contract); an aligned side is accessed with one volatile access, the
    // other (the caller's private buffer) without an alignment requirement.
    unsafe {
        let value = match source_aligned {
            true => source.cast::<T>().read_volatile(),
            false => source.cast::<T>().read_unaligned(),
        };
        match destination_aligned {
            true => destination.cast::<T>().write_volatile(value),
            false => destination.cast::<T>().write_unaligned(value),
        }
    }
    true
}

/// Zeroes `length` bytes at `destination`, which must be word-aligned (frames are).
///
/// # Safety
/// The range must be valid for writes.
pub unsafe fn zero_bytes(destination: *mut u8, length: usize) {
    let words = if (destination as usize).is_multiple_of(WORD) { length / WORD } else { 0 };
    // SAFETY: aligned (checked above), and `words` whole words lie in the range.
    unsafe {
        let to = destination.cast::<u64>();
        for word in 0..words {
            to.add(word).write_volatile(0);
        }
        destination.add(words * WORD).write_bytes(0, length - words * WORD);
    }
}

#[cfg(test)]
mod tests {
    use super::{copy_bytes, copy_field, zero_bytes};

    #[test]
    fn zeroes_whole_words_and_tails() {
        let mut buffer = std::vec![u64::MAX; 20];
        // SAFETY: 150 bytes inside a 160-byte, word-aligned vector.
        unsafe { zero_bytes(buffer.as_mut_ptr().cast::<u8>(), 150) };
        let bytes: std::vec::Vec<u8> = buffer.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert!(bytes[..150].iter().all(|&b| b == 0) && bytes[150..].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn copies_every_length_and_alignment() {
        let source: std::vec::Vec<u8> = (0..600).map(|i| (i * 7 % 251) as u8).collect();
        for source_offset in 0..9 {
            for destination_offset in 0..9 {
                for length in [0, 1, 2, 4, 7, 8, 63, 64, 127, 128, 129, 200, 511, 590] {
                    let mut destination = std::vec![0u8; 620];
                    // SAFETY: both ranges lie inside their vectors and do not overlap.
                    unsafe {
                        copy_bytes(
                            destination.as_mut_ptr().add(destination_offset),
                            source.as_ptr().add(source_offset),
                            length,
                        )
                    };
                    let copied = &destination[destination_offset..destination_offset + length];
                    assert_eq!(copied, &source[source_offset..source_offset + length]);
                    assert!(destination[..destination_offset].iter().all(|&b| b == 0));
                    assert!(destination[destination_offset + length..].iter().all(|&b| b == 0));
                }
            }
        }
    }

    #[test]
    fn a_field_is_copied_in_one_access_when_its_shared_side_is_aligned() {
        let source: [u64; 2] = [0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00];
        let base = source.as_ptr().cast::<u8>();
        for (length, offset, expected) in [
            (2, 0, true),  // a u16 ring index: aligned, one load
            (4, 4, true),  // a u32 at 4
            (8, 8, true),  // a u64 at 8
            (2, 1, false), // neither side aligned (the buffer below is at an odd place too)
            (3, 0, false), // not a field width
        ] {
            // Word-aligned, so that `to` is aligned exactly when `expected` says.
            let mut destination = [0u64; 3];
            let skew = if expected { 0 } else { 1 };
            let to = destination.as_mut_ptr().cast::<u8>().wrapping_add(skew);
            // SAFETY: `length` bytes inside both arrays, which do not overlap.
            let done = unsafe { copy_field(to, base.wrapping_add(offset), length) };
            assert_eq!(done, expected, "length {length} at offset {offset}");
            if done {
                // SAFETY: as above.
                let (copied, source_bytes) = unsafe {
                    (core::slice::from_raw_parts(to, length), core::slice::from_raw_parts(base.add(offset), length))
                };
                assert_eq!(copied, source_bytes);
            }
        }
    }
}
