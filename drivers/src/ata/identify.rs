//! What IDENTIFY DEVICE tells us: capacity, LBA48 support, the write cache
//! and how to flush it, model. The AHCI driver shares [`CacheFlush`]: a SATA
//! drive speaks the same ATA command set.

use alloc::string::String;

use dmakit::block::WriteCache;
use dmakit::dma::{AtaCause, Cause, IoFailure, IoReturn};

use super::registers::{COMMAND_FLUSH_CACHE, COMMAND_FLUSH_CACHE_EXT};

/// IDENTIFY word 83 bit 10: the 48-bit address feature set.
const WORD_83_LBA48: u16 = 1 << 10;
/// The most sectors words 60-61 may say (ATA8-ACS: 0FFFFFFFh; 28-bit commands
/// address no more).
pub const LBA28_MAX_SECTORS: u64 = 0x0fff_ffff;
/// The most sectors words 100-103 may say (ATA8-ACS: 0000FFFFFFFFFFFFh).
pub const LBA48_MAX_SECTORS: u64 = (1 << 48) - 1;

/// IDENTIFY word 106 holds something when bits 15:14 are 01 (ATA8-ACS).
const WORD_106_VALID_MASK: u16 = 0xc000;
/// Bits 15:14 of word 106 when the word is valid.
const WORD_106_VALID: u16 = 0x4000;
/// IDENTIFY word 106 bit 12: the logical sector is longer than 256 words,
/// and words 117-118 say how long.
const WORD_106_LONG_LOGICAL_SECTOR: u16 = 1 << 12;
/// The one logical sector size the drivers address: 512 bytes, in words.
const SECTOR_WORDS: u32 = 256;
/// Word 255 bits 7:0 when bits 15:8 are a checksum (ATA8-ACS, integrity word).
const CHECKSUM_SIGNATURE: u16 = 0xa5;

/// IDENTIFY word 82 bit 5: the drive has a volatile write cache.
const WORD_82_WRITE_CACHE: u16 = 1 << 5;
/// IDENTIFY word 83 bit 13: FLUSH CACHE EXT is supported.
const WORD_83_FLUSH_CACHE_EXT: u16 = 1 << 13;
/// IDENTIFY word 83 bit 12: FLUSH CACHE is supported.
const WORD_83_FLUSH_CACHE: u16 = 1 << 12;

/// How a drive's volatile write cache is flushed, from IDENTIFY (ATA8-ACS
/// words 82 and 83). A cache that is supported but switched off (word 85)
/// is flushed all the same: the drive answers at once, and it may be
/// switched on by whoever else talks to the drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheFlush {
    /// No volatile write cache (word 82 bit 5 clear): a finished write is on
    /// the medium.
    NoCache,
    /// FLUSH CACHE (E7h): a cache, and no FLUSH CACHE EXT.
    FlushCache,
    /// FLUSH CACHE EXT (EAh): word 83 bit 13.
    FlushCacheExt,
}

impl CacheFlush {
    /// What IDENTIFY's `words` say.
    pub fn from_words(words: &[u16; 256]) -> CacheFlush {
        match (words[82] & WORD_82_WRITE_CACHE, words[83] & WORD_83_FLUSH_CACHE_EXT) {
            (0, _) => CacheFlush::NoCache,
            (_, 0) => CacheFlush::FlushCache,
            _ => CacheFlush::FlushCacheExt,
        }
    }

    /// Sets the bits that say `self` in IDENTIFY's `words` (for fake drives).
    pub fn set_words(self, words: &mut [u16; 256]) {
        let (word_82, word_83) = match self {
            CacheFlush::NoCache => (0, 0),
            CacheFlush::FlushCache => (WORD_82_WRITE_CACHE, WORD_83_FLUSH_CACHE),
            CacheFlush::FlushCacheExt => (WORD_82_WRITE_CACHE, WORD_83_FLUSH_CACHE | WORD_83_FLUSH_CACHE_EXT),
        };
        words[82] |= word_82;
        words[83] |= word_83;
    }

    /// The command byte that flushes, if there is a cache.
    pub fn command(self) -> Option<u8> {
        match self {
            CacheFlush::NoCache => None,
            CacheFlush::FlushCache => Some(COMMAND_FLUSH_CACHE),
            CacheFlush::FlushCacheExt => Some(COMMAND_FLUSH_CACHE_EXT),
        }
    }

    /// What the block layer is told.
    pub fn write_cache(self) -> WriteCache {
        match self {
            CacheFlush::NoCache => WriteCache::WriteThrough,
            _ => WriteCache::Volatile,
        }
    }
}

/// How commands name sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    /// 28-bit LBA (READ DMA, WRITE DMA): 2^28 sectors, 256 per command.
    Lba28,
    /// 48-bit LBA too (the EXT commands).
    Lba48,
}

/// The fields dmakit uses from the 256 IDENTIFY words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Addressable sectors.
    pub sectors: u64,
    /// The addressing the drive understands: `Lba48` if it has the 48-bit
    /// command set (word 83 bit 10).
    pub addressing: Addressing,
    /// The model string (words 27-46, two characters per word, high byte first).
    pub model: String,
    /// The write cache, and the command that flushes it.
    pub flush: CacheFlush,
}

/// The drive's addressing and addressable sectors, from IDENTIFY's `words`:
/// without the 48-bit feature set (word 83 bit 10) words 60-61 only, at most
/// [`LBA28_MAX_SECTORS`]; with it words 100-103 only, at most
/// [`LBA48_MAX_SECTORS`]. A count past its words' maximum, or 0, is refused:
/// a drive is not trusted, and a capacity the commands cannot reach (or
/// none) would make the block layer's bounds checks wrong.
pub fn capacity(words: &[u16; 256]) -> Result<(Addressing, u64), IoFailure> {
    let (addressing, word, max) = match words[83] & WORD_83_LBA48 {
        0 => (Addressing::Lba28, 60, LBA28_MAX_SECTORS),
        _ => (Addressing::Lba48, 100, LBA48_MAX_SECTORS),
    };
    let count_words = match addressing {
        Addressing::Lba28 => &words[60..62],
        Addressing::Lba48 => &words[100..104],
    };
    let sectors = count_words.iter().rev().fold(0u64, |total, &word| total << 16 | u64::from(word));
    let refused = |cause| Err(IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
    match sectors {
        0 => refused(AtaCause::NoSectors { word }),
        _ if sectors > max => refused(AtaCause::SectorCountTooLarge { word, sectors, max }),
        _ => Ok((addressing, sectors)),
    }
}

/// Whether IDENTIFY's `words` can be believed beyond the sector count: when
/// word 255 carries the A5h signature its checksum must make the 512 bytes
/// sum to 0 (else they were damaged on the way), and a logical sector (word
/// 106 bit 12, words 117-118) must be the 256 words every command of the
/// drivers counts in, so that no size of 0, odd or other is taken.
pub fn integrity(words: &[u16; 256]) -> Result<(), IoFailure> {
    let refused = |cause| Err(IoFailure::new(IoReturn::IoError, Cause::Ata(cause)));
    if words[255] & 0xff == CHECKSUM_SIGNATURE {
        let sum = words.iter().flat_map(|word| word.to_le_bytes()).fold(0u8, |sum, byte| sum.wrapping_add(byte));
        if sum != 0 {
            return refused(AtaCause::IdentifyChecksum { word: words[255] });
        }
    }
    let word_106 = words[106];
    if word_106 & WORD_106_VALID_MASK == WORD_106_VALID && word_106 & WORD_106_LONG_LOGICAL_SECTOR != 0 {
        let sector_words = u32::from(words[117]) | u32::from(words[118]) << 16;
        if sector_words != SECTOR_WORDS {
            return refused(AtaCause::LogicalSectorSize { words: sector_words });
        }
    }
    Ok(())
}

impl Identity {
    /// Decodes the words of an IDENTIFY DEVICE answer; refused when the
    /// sector count cannot be believed ([`capacity`]), or the rest
    /// ([`integrity`]).
    pub fn parse(words: &[u16; 256]) -> Result<Identity, IoFailure> {
        integrity(words)?;
        let (addressing, sectors) = capacity(words)?;
        let mut model = String::new();
        for word in &words[27..47] {
            for byte in word.to_be_bytes() {
                if byte.is_ascii_graphic() || byte == b' ' {
                    model.push(char::from(byte));
                }
            }
        }
        Ok(Identity { sectors, addressing, model: String::from(model.trim()), flush: CacheFlush::from_words(words) })
    }

    /// The IDENTIFY words a drive with these facts answers (for fake drives).
    pub fn to_words(&self) -> [u16; 256] {
        let mut words = [0u16; 256];
        // A drive with more sectors than 28 bits reach says 0FFFFFFFh here.
        words[60] = self.sectors.min(LBA28_MAX_SECTORS) as u16;
        words[61] = (self.sectors.min(LBA28_MAX_SECTORS) >> 16) as u16;
        if self.addressing == Addressing::Lba48 {
            words[83] = WORD_83_LBA48;
            for i in 0..4 {
                words[100 + i] = (self.sectors >> (16 * i)) as u16;
            }
        }
        self.flush.set_words(&mut words);
        let mut model = [b' '; 40];
        for (slot, byte) in model.iter_mut().zip(self.model.bytes()) {
            *slot = byte;
        }
        for (index, pair) in model.chunks(2).enumerate() {
            words[27 + index] = u16::from_be_bytes([pair[0], pair[1]]);
        }
        words
    }
}

/// IDENTIFY words with `lba28` in words 60-61, `lba48` in words 100-103 and
/// word 83 bit 10 (the 48-bit command set) set for `Addressing::Lba48`: for
/// tests of both drivers that read IDENTIFY (PIIX and AHCI).
#[cfg(test)]
pub(crate) fn identify_words(addressing: Addressing, lba28: u32, lba48: u64) -> [u16; 256] {
    let mut words = [0u16; 256];
    words[60] = lba28 as u16;
    words[61] = (lba28 >> 16) as u16;
    for i in 0..4 {
        words[100 + i] = (lba48 >> (16 * i)) as u16;
    }
    if addressing == Addressing::Lba48 {
        words[83] = 1 << 10;
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_words() {
        let identity = Identity {
            sectors: 0x1_2345_6789,
            addressing: Addressing::Lba48,
            model: String::from("QEMU HARDDISK"),
            flush: CacheFlush::FlushCacheExt,
        };
        assert_eq!(Identity::parse(&identity.to_words()), Ok(identity));
        for flush in [CacheFlush::NoCache, CacheFlush::FlushCache] {
            let small = Identity { sectors: 32768, addressing: Addressing::Lba28, model: String::from("X"), flush };
            assert_eq!(Identity::parse(&small.to_words()), Ok(small));
        }
    }
}
