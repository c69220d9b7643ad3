//! The legacy (virtio 0.9.5) register block of a fake device, one
//! `RegisterIo` as the kernel reaches I/O BAR 0: queue select picks the queue
//! the size, address and (none here) vector registers refer to; a queue's
//! address is its page number, from which the device derives its rings with
//! the legacy layout at the size the device fixes for that queue; a notify
//! names its queue by the value written.

use alloc::sync::Arc;

use dmakit::dma::DmaAddr;
use dmakit::io::RegisterIo;

use super::super::queue::QueueLayout;
use super::super::registers::*;
use super::device::{FakeDevice, Personality};
use super::rings::{QueueState, Ring};

/// The legacy registers of a shared fake.
pub struct FakeRegisters<P: Personality>(pub Arc<FakeDevice<P>>);

impl<P: Personality> RegisterIo for FakeRegisters<P> {
    fn read8(&self, offset: u16) -> u8 {
        let mut state = self.0.state.lock();
        match offset {
            DEVICE_STATUS => state.status,
            ISR_STATUS => core::mem::take(&mut state.isr),
            _ => panic!("read8 of {offset:#x}"),
        }
    }

    /// The selected queue's size; 0 for a queue the device does not have.
    fn read16(&self, offset: u16) -> u16 {
        let selected = self.0.state.lock().selected;
        match offset {
            QUEUE_SIZE => self.0.offer(selected).map_or(0, |offer| offer.max_size),
            _ => panic!("read16 of {offset:#x}"),
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        match offset {
            DEVICE_FEATURES => {
                assert_eq!(self.0.offered >> 32, 0, "a legacy device has 32 feature bits");
                self.0.offered as u32
            }
            o if o >= LEGACY_DEVICE_CONFIG => self.0.personality.config_read32(o - LEGACY_DEVICE_CONFIG),
            _ => panic!("read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        assert_eq!(offset, DEVICE_STATUS, "write8 of {offset:#x}");
        self.0.write_status(value);
    }

    fn write16(&self, offset: u16, value: u16) {
        match offset {
            QUEUE_SELECT => self.0.state.lock().selected = value,
            QUEUE_NOTIFY => self.0.process(value),
            _ => panic!("write16 of {offset:#x}"),
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        let mut state = self.0.state.lock();
        match offset {
            GUEST_FEATURES => self.0.accept_features(&mut state, u64::from(value)),
            QUEUE_ADDRESS => {
                let queue = state.selected;
                let size = self.0.offer(queue).map_or(0, |offer| offer.max_size);
                assert_ne!(size, 0, "address of queue {queue}, which the device does not have");
                let areas = QueueLayout::new(size).areas(DmaAddr::new(u64::from(value) * QUEUE_ALIGNMENT));
                let ring = Ring {
                    size,
                    descriptors: areas.descriptors.as_u64(),
                    driver: areas.driver.as_u64(),
                    device: areas.device.as_u64(),
                };
                let queue_state = self.0.queue_state(&mut state, queue).expect("a queue the device has");
                // Page 0 takes the queue away.
                *queue_state = match value {
                    0 => QueueState::default(),
                    _ => QueueState::start(ring),
                };
            }
            _ => panic!("write32 of {offset:#x}"),
        }
    }
}
