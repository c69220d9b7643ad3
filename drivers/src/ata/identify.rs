//! What IDENTIFY DEVICE tells us: capacity, LBA48 support, model.

use alloc::string::String;

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
}

impl Identity {
    /// Decodes the words of an IDENTIFY DEVICE answer.
    pub fn parse(words: &[u16; 256]) -> Identity {
        let addressing = if words[83] & (1 << 10) != 0 { Addressing::Lba48 } else { Addressing::Lba28 };
        let lba28_sectors = u64::from(words[60]) | u64::from(words[61]) << 16;
        let lba48_sectors = (0..4).fold(0u64, |total, i| total | u64::from(words[100 + i]) << (16 * i));
        let sectors = match addressing {
            Addressing::Lba48 if lba48_sectors > 0 => lba48_sectors,
            _ => lba28_sectors,
        };
        let mut model = String::new();
        for word in &words[27..47] {
            for byte in word.to_be_bytes() {
                if byte.is_ascii_graphic() || byte == b' ' {
                    model.push(char::from(byte));
                }
            }
        }
        Identity { sectors, addressing, model: String::from(model.trim()) }
    }

    /// The IDENTIFY words a drive with these facts answers (for fake drives).
    pub fn to_words(&self) -> [u16; 256] {
        let mut words = [0u16; 256];
        words[60] = self.sectors.min(0x0fff_ffff) as u16;
        words[61] = (self.sectors.min(0x0fff_ffff) >> 16) as u16;
        if self.addressing == Addressing::Lba48 {
            words[83] = 1 << 10;
            for i in 0..4 {
                words[100 + i] = (self.sectors >> (16 * i)) as u16;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_words() {
        let identity =
            Identity { sectors: 0x1_2345_6789, addressing: Addressing::Lba48, model: String::from("QEMU HARDDISK") };
        assert_eq!(Identity::parse(&identity.to_words()), identity);
        let small = Identity { sectors: 32768, addressing: Addressing::Lba28, model: String::from("X") };
        assert_eq!(Identity::parse(&small.to_words()), small);
    }
}
