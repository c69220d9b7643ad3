//! The modern (virtio 1.0) structures of a fake device: common configuration,
//! notify, ISR and device configuration, one `RegisterIo` window each, as the
//! kernel maps them. Every queue register refers to the queue `queue_select`
//! names, and the rules of virtio 1.0 are checked for each queue: a
//! power-of-two size no larger than that queue's maximum, `FEATURES_OK`
//! before the queue is enabled, and every notify at that queue's
//! `queue_notify_off * notify_off_multiplier`, writing the queue's index.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use dmakit::io::RegisterIo;

use super::super::modern::CommonConfiguration;
use super::super::registers::*;
use super::device::{ConfigGeneration, FakeDevice, Personality, State};
use super::rings::{QueueState, Ring};

/// Which modern structure a [`FakeStructure`] window shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StructureKind {
    /// Common configuration.
    Common,
    /// Notify.
    Notify,
    /// ISR.
    Isr,
    /// Device configuration.
    Device,
}

/// One modern register structure of a shared fake, offsets from its start.
pub struct FakeStructure<P: Personality> {
    pub(super) fake: Arc<FakeDevice<P>>,
    pub(super) kind: StructureKind,
}

macro_rules! common {
    ($field:ident) => {
        core::mem::offset_of!(CommonConfiguration, $field) as u16
    };
}

impl<P: Personality> FakeStructure<P> {
    fn only(&self, kind: StructureKind, width: u16, offset: u16) {
        assert_eq!(self.kind, kind, "{width}-bit access at {offset:#x} of the {:?} structure", self.kind);
    }

    /// The low half of a 64-bit queue address register.
    fn low_half(target: &mut u64, value: u32) {
        *target = (*target & !0xffff_ffff) | u64::from(value);
    }

    /// The high half of a 64-bit queue address register.
    fn high_half(target: &mut u64, value: u32) {
        *target = (*target & 0xffff_ffff) | u64::from(value) << 32;
    }

    /// The selected queue, which the driver may only configure if the device
    /// has it.
    fn selected<'a>(&self, state: &'a mut State, register: &str) -> &'a mut QueueState {
        let queue = state.selected;
        self.fake
            .queue_state(state, queue)
            .unwrap_or_else(|| panic!("{register} of queue {queue}, which the device does not have"))
    }

    /// A notify write: the value names the queue, and it must land where
    /// that queue is notified.
    fn notify(&self, offset: u16, queue: u16) {
        self.fake.notify_offsets.lock().push(offset);
        let offer = self.fake.offer(queue).unwrap_or_else(|| panic!("notify of queue {queue}, which it does not have"));
        let expected = u32::from(offer.notify_off) * self.fake.notify_off_multiplier;
        assert_eq!(
            u32::from(offset),
            expected,
            "notify of queue {queue} at its queue_notify_off {} * notify_off_multiplier {}",
            offer.notify_off,
            self.fake.notify_off_multiplier
        );
        self.fake.process(queue);
    }
}

impl<P: Personality> RegisterIo for FakeStructure<P> {
    fn read8(&self, offset: u16) -> u8 {
        let mut state = self.fake.state.lock();
        match (self.kind, offset) {
            (StructureKind::Common, o) if o == common!(device_status) => state.status,
            (StructureKind::Common, o) if o == common!(config_generation) => match self.fake.config_generation {
                ConfigGeneration::Stable => 0,
                ConfigGeneration::NeverSettles => self.fake.generation_reads.fetch_add(1, Ordering::Relaxed),
            },
            (StructureKind::Isr, 0) => core::mem::take(&mut state.isr),
            (kind, _) => panic!("read8 at {offset:#x} of the {kind:?} structure"),
        }
    }

    fn read16(&self, offset: u16) -> u16 {
        self.only(StructureKind::Common, 16, offset);
        let mut state = self.fake.state.lock();
        let queue = state.selected;
        let offer = self.fake.offer(queue);
        match (offset, offer) {
            (o, _) if o == common!(num_queues) => self.fake.queue_count(),
            // A queue the device does not have is unavailable: size 0.
            (o, None) if o == common!(queue_size) => 0,
            (_, None) => panic!("common read16 of {offset:#x} for queue {queue}, which the device does not have"),
            // The maximum after a reset, then whatever the driver wrote.
            (o, Some(offer)) if o == common!(queue_size) => match self.selected(&mut state, "size").staged.size {
                0 => offer.max_size,
                written => written,
            },
            (o, Some(offer)) if o == common!(queue_notify_off) => offer.notify_off,
            (o, Some(_)) if o == common!(queue_enable) => u16::from(self.selected(&mut state, "enable").ring.is_some()),
            _ => panic!("common read16 of {offset:#x}"),
        }
    }

    fn read32(&self, offset: u16) -> u32 {
        if self.kind == StructureKind::Device {
            return self.fake.personality.config_read32(offset);
        }
        self.only(StructureKind::Common, 32, offset);
        let state = self.fake.state.lock();
        match offset {
            o if o == common!(device_feature) => (self.fake.offered >> (32 * state.device_feature_select)) as u32,
            _ => panic!("common read32 of {offset:#x}"),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        self.only(StructureKind::Common, 8, offset);
        assert_eq!(offset, common!(device_status), "common write8 of {offset:#x}");
        self.fake.write_status(value);
    }

    fn write16(&self, offset: u16, value: u16) {
        if self.kind == StructureKind::Notify {
            return self.notify(offset, value);
        }
        self.only(StructureKind::Common, 16, offset);
        let mut state = self.fake.state.lock();
        let features_ok = state.status & STATUS_FEATURES_OK != 0;
        let queue = state.selected;
        match offset {
            o if o == common!(queue_select) => state.selected = value,
            o if o == common!(queue_size) => {
                let max = self.fake.offer(queue).map_or(0, |offer| offer.max_size);
                assert!(value.is_power_of_two() && value <= max, "queue {queue}: size {value} (max {max})");
                self.selected(&mut state, "size").staged.size = value;
            }
            o if o == common!(queue_enable) => {
                assert_eq!(value, 1, "a queue is enabled, never disabled, by writing 1");
                assert!(features_ok, "queue {queue} enabled before FEATURES_OK");
                let max = self.fake.offer(queue).map_or(0, |offer| offer.max_size);
                let queue_state = self.selected(&mut state, "enable");
                let mut ring: Ring = queue_state.staged;
                if ring.size == 0 {
                    ring.size = max;
                }
                assert!(ring.descriptors != 0 && ring.driver != 0 && ring.device != 0, "queue {queue}: {ring:?}");
                *queue_state = QueueState { staged: ring, ..QueueState::start(ring) };
            }
            _ => panic!("common write16 of {offset:#x}"),
        }
    }

    fn write32(&self, offset: u16, value: u32) {
        self.only(StructureKind::Common, 32, offset);
        let mut state = self.fake.state.lock();
        let select = state.driver_feature_select;
        match offset {
            o if o == common!(device_feature_select) => state.device_feature_select = value,
            o if o == common!(driver_feature_select) => state.driver_feature_select = value,
            o if o == common!(driver_feature) => {
                let accepted = match select {
                    0 => (state.accepted & !0xffff_ffff) | u64::from(value),
                    _ => (state.accepted & 0xffff_ffff) | u64::from(value) << 32,
                };
                self.fake.accept_features(&mut state, accepted);
            }
            _ => {
                let staged = &mut self.selected(&mut state, "address").staged;
                match offset {
                    o if o == common!(queue_desc) => Self::low_half(&mut staged.descriptors, value),
                    o if o == common!(queue_desc) + 4 => Self::high_half(&mut staged.descriptors, value),
                    o if o == common!(queue_driver) => Self::low_half(&mut staged.driver, value),
                    o if o == common!(queue_driver) + 4 => Self::high_half(&mut staged.driver, value),
                    o if o == common!(queue_device) => Self::low_half(&mut staged.device, value),
                    o if o == common!(queue_device) + 4 => Self::high_half(&mut staged.device, value),
                    _ => panic!("common write32 of {offset:#x}"),
                }
            }
        }
    }
}
