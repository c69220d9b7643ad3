//! What Identify answers (NVMe 2.0, 5.17.2): the controller data structure
//! (model, serial, MDTS, queue entry sizes, volatile write cache, SGL support)
//! and the namespace's
//! (size and LBA format), each 4096 bytes, read into typed values. The fake
//! controller writes them with the same layout (`to_bytes`).

use alloc::string::String;

use dmakit::block::WriteCache;
use dmakit::dma::{Cause, ControllerField, IoFailure, IoReturn, NvmeCause};

/// Bytes of an Identify data structure.
pub const IDENTIFY_BYTES: usize = 4096;

/// SGLS bits 1:0: 01b (any alignment) or 10b (dword alignment) mean SGLs
/// are supported for NVM commands.
const SGLS_SUPPORT: u32 = 0b11;
/// VWC bit 0: a volatile write cache is present.
const VWC_PRESENT: u8 = 1;

/// The controller, as Identify Controller describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// Serial number (bytes 4..24, ASCII, space padded).
    pub serial: String,
    /// Model number (bytes 24..64).
    pub model: String,
    /// MDTS (byte 77): the largest transfer is 2^MDTS minimum pages; 0 means
    /// no limit.
    pub max_transfer_shift: u8,
    /// SQES (byte 512): required (3:0) and largest (7:4) submission entry
    /// sizes, as powers of two.
    pub submission_entry_sizes: u8,
    /// CQES (byte 513), likewise for completion entries.
    pub completion_entry_sizes: u8,
    /// Namespaces (bytes 516..520).
    pub namespaces: u32,
    /// VWC (byte 525): bit 0, a volatile write cache is present.
    pub volatile_write_cache: u8,
    /// SGLS (bytes 536..540).
    pub sgl_support: u32,
}

/// A namespace, as Identify Namespace describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceIdentity {
    /// NSZE: blocks.
    pub blocks: u64,
    /// NCAP: blocks that may be allocated at once (at most NSZE).
    pub capacity: u64,
    /// log2 of the block size in the formatted LBA format (LBADS).
    pub block_shift: u8,
    /// Metadata bytes per block in that format.
    pub metadata: u16,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end_matches([' ', '\0']).into()
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

impl ControllerIdentity {
    /// The structure in `bytes`.
    pub fn parse(bytes: &[u8; IDENTIFY_BYTES]) -> ControllerIdentity {
        ControllerIdentity {
            serial: text(&bytes[4..24]),
            model: text(&bytes[24..64]),
            max_transfer_shift: bytes[77],
            submission_entry_sizes: bytes[512],
            completion_entry_sizes: bytes[513],
            namespaces: le32(bytes, 516),
            volatile_write_cache: bytes[525],
            sgl_support: le32(bytes, 536),
        }
    }

    /// Whether a finished write may still sit in a volatile cache: then the
    /// driver sends Flush. A present cache that is switched off (the Volatile
    /// Write Cache feature) is flushed too: a Flush costs it nothing.
    pub fn write_cache(&self) -> WriteCache {
        match self.volatile_write_cache & VWC_PRESENT {
            0 => WriteCache::WriteThrough,
            _ => WriteCache::Volatile,
        }
    }

    /// Whether the controller takes SGLs for NVM commands.
    pub fn supports_sgl(&self) -> bool {
        self.sgl_support & SGLS_SUPPORT != 0
    }

    /// The largest transfer in bytes for a controller whose smallest page is
    /// `min_page_size`; `None` for no limit: MDTS 0, or a limit of 2^64
    /// bytes or more (which a 64-bit count never reaches).
    pub fn max_transfer_bytes(&self, min_page_size: u64) -> Option<u64> {
        match self.max_transfer_shift {
            0 => None,
            shift => 1u64.checked_shl(u32::from(shift)).and_then(|pages| pages.checked_mul(min_page_size)),
        }
    }

    /// Refuses values no controller the driver can use reports: no
    /// namespace (NN 0), or queue entries other than the 64 and 16 bytes
    /// every NVM controller requires (SQES and CQES: required size 3:0
    /// exactly 6 and 4, largest 7:4 at least that).
    pub fn check(&self) -> Result<(), IoFailure> {
        let impossible = |field, value: u64| {
            let cause = NvmeCause::ImpossibleValue { field, value };
            Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)))
        };
        let standard = |sizes: u8, wanted: u8| sizes & 0xf == wanted && sizes >> 4 >= wanted;
        if self.namespaces == 0 {
            return impossible(ControllerField::Namespaces, 0);
        }
        if !standard(self.submission_entry_sizes, 6) {
            return impossible(ControllerField::SubmissionEntrySizes, self.submission_entry_sizes.into());
        }
        if !standard(self.completion_entry_sizes, 4) {
            return impossible(ControllerField::CompletionEntrySizes, self.completion_entry_sizes.into());
        }
        Ok(())
    }

    /// The structure's bytes (for the fake controller).
    pub fn to_bytes(&self) -> [u8; IDENTIFY_BYTES] {
        let mut bytes = [0u8; IDENTIFY_BYTES];
        let pad = |field: &mut [u8], value: &str| {
            field.fill(b' ');
            let length = value.len().min(field.len());
            field[..length].copy_from_slice(&value.as_bytes()[..length]);
        };
        pad(&mut bytes[4..24], &self.serial);
        pad(&mut bytes[24..64], &self.model);
        bytes[77] = self.max_transfer_shift;
        bytes[512] = self.submission_entry_sizes;
        bytes[513] = self.completion_entry_sizes;
        bytes[516..520].copy_from_slice(&self.namespaces.to_le_bytes());
        bytes[525] = self.volatile_write_cache;
        bytes[536..540].copy_from_slice(&self.sgl_support.to_le_bytes());
        bytes
    }
}

impl NamespaceIdentity {
    /// The structure in `bytes`: NSZE, and the LBA format FLBAS selects.
    pub fn parse(bytes: &[u8; IDENTIFY_BYTES]) -> NamespaceIdentity {
        let blocks = u64::from_le_bytes(bytes[0..8].try_into().expect("eight bytes"));
        // FLBAS bits 3:0 pick the format, bits 6:5 extend it past 16.
        let flbas = bytes[26];
        let index = usize::from(flbas & 0xf) | usize::from((flbas >> 5) & 0x3) << 4;
        let format = le32(bytes, 128 + 4 * index);
        let capacity = u64::from_le_bytes(bytes[8..16].try_into().expect("eight bytes"));
        NamespaceIdentity { blocks, capacity, block_shift: (format >> 16) as u8, metadata: format as u16 }
    }

    /// Bytes per block, if the driver moves this format: 512 to 4096 bytes, no
    /// metadata; else the typed refusal. A namespace that cannot be (more
    /// capacity than size, more bytes than 64 bits count) is refused by name.
    pub fn block_size(&self) -> Result<u32, IoFailure> {
        let block_size = 1u64.checked_shl(u32::from(self.block_shift)).unwrap_or(0);
        let impossible = |field, value| {
            let cause = NvmeCause::ImpossibleValue { field, value };
            Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)))
        };
        if self.blocks == 0 {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::Nvme(NvmeCause::NoNamespace)));
        }
        if self.capacity > self.blocks {
            return impossible(ControllerField::NamespaceCapacity, self.capacity);
        }
        if !(9..=12).contains(&self.block_shift) || self.metadata != 0 {
            let cause = NvmeCause::LbaFormatUnsupported { block_size, metadata: self.metadata };
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Nvme(cause)));
        }
        // The block layer counts the disk's bytes in 64 bits.
        if self.blocks.checked_mul(block_size).is_none() {
            return impossible(ControllerField::NamespaceSize, self.blocks);
        }
        Ok(block_size as u32)
    }

    /// The structure's bytes, with the format in LBA format 0 (for the fake).
    pub fn to_bytes(&self) -> [u8; IDENTIFY_BYTES] {
        let mut bytes = [0u8; IDENTIFY_BYTES];
        bytes[0..8].copy_from_slice(&self.blocks.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.capacity.to_le_bytes());
        let format = u32::from(self.block_shift) << 16 | u32::from(self.metadata);
        bytes[128..132].copy_from_slice(&format.to_le_bytes());
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identify_structures_round_trip_and_say_what_the_driver_needs() {
        let controller = ControllerIdentity {
            serial: "dmakit-1".into(),
            model: "FAKE NVME".into(),
            max_transfer_shift: 5,
            submission_entry_sizes: 0x66,
            completion_entry_sizes: 0x44,
            namespaces: 1,
            volatile_write_cache: 1,
            sgl_support: 1,
        };
        let parsed = ControllerIdentity::parse(&controller.to_bytes());
        assert_eq!(parsed, controller);
        assert_eq!(parsed.write_cache(), WriteCache::Volatile);
        let without_cache = ControllerIdentity { volatile_write_cache: 0, ..parsed.clone() };
        assert_eq!(without_cache.write_cache(), WriteCache::WriteThrough);
        assert!(parsed.supports_sgl() && parsed.check().is_ok());
        assert_eq!(parsed.max_transfer_bytes(4096), Some(128 * 1024));
        assert_eq!(ControllerIdentity { max_transfer_shift: 0, ..parsed.clone() }.max_transfer_bytes(4096), None);
        assert!(ControllerIdentity { submission_entry_sizes: 0x77, ..parsed }.check().is_err());
        let namespace = NamespaceIdentity { blocks: 8192, capacity: 8192, block_shift: 9, metadata: 0 };
        assert_eq!(NamespaceIdentity::parse(&namespace.to_bytes()), namespace);
        assert_eq!(namespace.block_size(), Ok(512));
        let with_metadata = NamespaceIdentity { metadata: 8, ..namespace };
        let refused = with_metadata.block_size().unwrap_err().cause();
        assert_eq!(refused, Cause::Nvme(NvmeCause::LbaFormatUnsupported { block_size: 512, metadata: 8 }));
    }
}
