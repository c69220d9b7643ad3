//! The DMAR as the `acpi` crate sees it: a table type whose signature the
//! crate's `find_table` looks for, of which only the header is read. The
//! kernel's `platform` asks the crate for it; the host tests' walk over
//! generated tables does too.

use ::acpi::AcpiTable;
use ::acpi::sdt::{SdtHeader, Signature};

/// The DMAR's 36-byte header.
#[repr(transparent)]
pub(super) struct DmarHeader {
    header: SdtHeader,
}

// SAFETY: the type is exactly the 36-byte header every table starts with, and
// the signature is the DMAR's.
unsafe impl AcpiTable for DmarHeader {
    const SIGNATURE: Signature = Signature::DMAR;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}
