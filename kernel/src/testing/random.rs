//! Reproducible random numbers for the test kernels: xorshift64, so that a
//! failing run replays the same requests.

/// xorshift64 from a non-zero seed.
pub struct Random(pub u64);

impl Random {
    /// The next number below `bound` (not 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}
