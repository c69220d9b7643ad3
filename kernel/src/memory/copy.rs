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
/// # Safety
/// As for `core::ptr::copy_nonoverlapping`: both ranges valid, not overlapping.
pub unsafe fn copy_bytes(destination: *mut u8, source: *const u8, length: usize) {
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
    use super::{copy_bytes, zero_bytes};

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
                for length in [0, 1, 7, 8, 63, 64, 127, 128, 129, 200, 511, 590] {
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
}
