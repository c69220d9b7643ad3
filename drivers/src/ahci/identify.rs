//! What IDENTIFY DEVICE tells the AHCI driver: capacity, NCQ and its queue
//! depth, the write cache and its flush command, model (ATA8-ACS words 27-46,
//! 60-61, 75, 76, 82, 83, 100-103).

use alloc::string::String;

use dmakit::dma::{AtaCause, Cause, IoFailure, IoReturn};

pub use crate::ata::identify::CacheFlush;
use crate::ata::identify::{Addressing, LBA28_MAX_SECTORS, capacity, integrity};

/// IDENTIFY word 76 bit 8: native command queuing.
const WORD_76_NCQ: u16 = 1 << 8;
/// Word 76 as a device that claims no Serial ATA capabilities says it
/// (ATA8-ACS: 0000h or FFFFh): none of its bits is a claim.
const WORD_76_NO_CLAIM: u16 = 0xffff;

/// The fields the driver uses from the 256 IDENTIFY words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriveIdentity {
    /// Addressable sectors (the LBA48 count when the drive has LBA48).
    pub sectors: u64,
    /// Whether the drive supports native command queuing (word 76 bit 8).
    pub ncq: bool,
    /// Commands the drive queues at once (word 75 bits 4:0, plus one).
    pub queue_depth: usize,
    /// The model string.
    pub model: String,
    /// The write cache, and the command that flushes it (words 82, 83).
    pub flush: CacheFlush,
}

impl DriveIdentity {
    /// Decodes an IDENTIFY DEVICE answer; refused when the sector count
    /// cannot be believed (the PIIX driver's [`capacity`]: the same ATA
    /// words, the same edges) or the rest ([`integrity`]), and when the
    /// drive lacks the 48-bit commands this driver sends (READ/WRITE DMA
    /// EXT, FPDMA QUEUED).
    pub fn parse(words: &[u16; 256]) -> Result<DriveIdentity, IoFailure> {
        integrity(words)?;
        let (addressing, sectors) = capacity(words)?;
        if addressing == Addressing::Lba28 {
            return Err(IoFailure::new(IoReturn::IoError, Cause::Ata(AtaCause::No48BitCommands)));
        }
        let mut model = String::new();
        for byte in words[27..47].iter().flat_map(|word| word.to_be_bytes()) {
            if byte.is_ascii_graphic() || byte == b' ' {
                model.push(char::from(byte));
            }
        }
        Ok(DriveIdentity {
            sectors,
            ncq: words[76] != WORD_76_NO_CLAIM && words[76] & WORD_76_NCQ != 0,
            queue_depth: usize::from(words[75] & 0x1f) + 1,
            model: String::from(model.trim()),
            flush: CacheFlush::from_words(words),
        })
    }

    /// The words a drive with these facts answers (for fake drives): LBA48.
    pub fn to_words(&self) -> [u16; 256] {
        let mut words = [0u16; 256];
        words[60] = self.sectors.min(LBA28_MAX_SECTORS) as u16;
        words[61] = (self.sectors.min(LBA28_MAX_SECTORS) >> 16) as u16;
        words[83] = 1 << 10;
        for i in 0..4 {
            words[100 + i] = (self.sectors >> (16 * i)) as u16;
        }
        words[75] = (self.queue_depth.clamp(1, 32) - 1) as u16;
        words[76] = if self.ncq { WORD_76_NCQ } else { 0 };
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

    /// The words as the 512 bytes the drive sends (little-endian words).
    pub fn to_bytes(&self) -> [u8; 512] {
        words_to_bytes(&self.to_words())
    }

    /// Decodes the 512 bytes of an IDENTIFY DEVICE answer.
    pub fn from_bytes(bytes: &[u8; 512]) -> Result<DriveIdentity, IoFailure> {
        let mut words = [0u16; 256];
        for (word, pair) in words.iter_mut().zip(bytes.chunks(2)) {
            *word = u16::from_le_bytes([pair[0], pair[1]]);
        }
        DriveIdentity::parse(&words)
    }
}

/// IDENTIFY's words as the 512 bytes a drive sends (little-endian words).
pub fn words_to_bytes(words: &[u16; 256]) -> [u8; 512] {
    let mut bytes = [0; 512];
    for (pair, word) in bytes.chunks_mut(2).zip(words) {
        pair.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_bytes() {
        let identity = DriveIdentity {
            sectors: 0x1_2345_6789,
            ncq: true,
            queue_depth: 32,
            model: String::from("QEMU HARDDISK"),
            flush: CacheFlush::FlushCacheExt,
        };
        assert_eq!(DriveIdentity::from_bytes(&identity.to_bytes()), Ok(identity));
        let model = String::from("X");
        let plain = DriveIdentity { sectors: 32768, ncq: false, queue_depth: 1, model, flush: CacheFlush::NoCache };
        assert_eq!(DriveIdentity::parse(&plain.to_words()), Ok(plain));
    }
}
