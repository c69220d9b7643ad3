//! A window into a shared register block: the same registers seen from an offset.
//! PIIX's bus-master block serves both IDE channels, 8 registers each.

use alloc::sync::Arc;

use dmakit::io::RegisterIo;

/// Registers of `inner` starting at `offset`.
pub struct Window<R: RegisterIo> {
    inner: Arc<R>,
    offset: u16,
}

impl<R: RegisterIo> Window<R> {
    /// The registers of `inner` from `offset` on.
    pub fn new(inner: Arc<R>, offset: u16) -> Window<R> {
        Window { inner, offset }
    }
}

impl<R: RegisterIo> RegisterIo for Window<R> {
    fn read8(&self, offset: u16) -> u8 {
        self.inner.read8(self.offset + offset)
    }
    fn read16(&self, offset: u16) -> u16 {
        self.inner.read16(self.offset + offset)
    }
    fn read32(&self, offset: u16) -> u32 {
        self.inner.read32(self.offset + offset)
    }
    fn write8(&self, offset: u16, value: u8) {
        self.inner.write8(self.offset + offset, value)
    }
    fn write16(&self, offset: u16, value: u16) {
        self.inner.write16(self.offset + offset, value)
    }
    fn write32(&self, offset: u16, value: u32) {
        self.inner.write32(self.offset + offset, value)
    }
}
