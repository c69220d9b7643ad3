//! [`RegisterIo`]: "read or write a register at this offset", the one thing a
//! driver needs from a device's registers, whatever reaches them (ports, MMIO,
//! or a fake device in a host test).

use alloc::boxed::Box;
use alloc::sync::Arc;

/// Registers at offsets from a base: what a driver needs to talk to a device.
pub trait RegisterIo: Send + Sync {
    /// Reads an 8-bit register.
    fn read8(&self, offset: u16) -> u8;
    /// Reads a 16-bit register.
    fn read16(&self, offset: u16) -> u16;
    /// Reads a 32-bit register.
    fn read32(&self, offset: u16) -> u32;
    /// Writes an 8-bit register.
    fn write8(&self, offset: u16, value: u8);
    /// Writes a 16-bit register.
    fn write16(&self, offset: u16, value: u16);
    /// Writes a 32-bit register.
    fn write32(&self, offset: u16, value: u32);
    /// Reads a 64-bit register; by default as two 32-bit reads, low half first
    /// (what VT-d and virtio allow for their 64-bit registers).
    fn read64(&self, offset: u16) -> u64 {
        u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32)
    }
    /// Writes a 64-bit register; by default as two 32-bit writes, low half first.
    fn write64(&self, offset: u16, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
}

/// Registers behind a smart pointer are the same registers: a driver may hold
/// its register block in a `Box` or share it through an `Arc`.
macro_rules! forward_register_io {
    ($pointer:ident) => {
        impl<T: RegisterIo + ?Sized> RegisterIo for $pointer<T> {
            fn read8(&self, offset: u16) -> u8 {
                (**self).read8(offset)
            }
            fn read16(&self, offset: u16) -> u16 {
                (**self).read16(offset)
            }
            fn read32(&self, offset: u16) -> u32 {
                (**self).read32(offset)
            }
            fn write8(&self, offset: u16, value: u8) {
                (**self).write8(offset, value)
            }
            fn write16(&self, offset: u16, value: u16) {
                (**self).write16(offset, value)
            }
            fn write32(&self, offset: u16, value: u32) {
                (**self).write32(offset, value)
            }
            fn read64(&self, offset: u16) -> u64 {
                (**self).read64(offset)
            }
            fn write64(&self, offset: u16, value: u64) {
                (**self).write64(offset, value)
            }
        }
    };
}

forward_register_io!(Box);
forward_register_io!(Arc);
