//! SHA-256 of disk data, so a test (or a learner) can compare what the kernel
//! read with the image file on the host (`sha256sum`).

use alloc::string::String;
use core::fmt::Write;

use sha2::{Digest, Sha256};

/// A SHA-256 fed piece by piece.
#[derive(Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    /// An empty digest.
    pub fn new() -> Sha256Stream {
        Sha256Stream(Sha256::new())
    }

    /// Adds `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lowercase hex digest of everything added.
    pub fn finish_hex(self) -> String {
        let mut text = String::with_capacity(64);
        for byte in self.0.finalize() {
            // Writing to a String cannot fail.
            let _ = write!(text, "{byte:02x}");
        }
        text
    }
}

/// The lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut stream = Sha256Stream::new();
    stream.update(data);
    stream.finish_hex()
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(super::sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
