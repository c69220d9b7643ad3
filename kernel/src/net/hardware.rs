//! What a network driver implements: a device with a ring of receive buffers
//! and a ring of transmit buffers, one slot each. The driver programs the
//! device; it never owns a buffer (the spirit of `block::HardwareQueue`).
//!
//! The network layer ([`super::Nic`]) owns every buffer's DMA life cycle: it
//! prepares each buffer once, when the interface starts, into a slot of its
//! receive or transmit [`crate::dma::TransferSlots`], and *lends* the prepared
//! transfer to [`NetworkHardware::post_receive`] or
//! [`NetworkHardware::post_transmit`] for as long as the call takes. Between
//! packets the buffer stays prepared; `synchronize_range` hands it to the CPU
//! and back. [`NetworkHardware::collect`] says which buffers the device gave
//! back, and how many bytes it wrote into a receive buffer.
//!
//! Who calls what, and from where:
//!
//! | method | called from | may lock / allocate |
//! |---|---|---|
//! | `acknowledge_interrupt` | the interrupt handler | neither |
//! | `post_receive`, `post_transmit`, `collect`, `quiesce` | the layer's owner, one at a time | both |
//! | `shape` | anywhere | both |

use super::{DeviceHealth, Quiesced, Slot};
use crate::dma::{DmaPlatform, IoFailure, LentTransfer, Specification};

/// What a driver says about its interface, once, when the layer takes it.
#[derive(Clone, Copy)]
pub struct NicShape {
    /// The driver's name, e.g. "VirtioNet".
    pub driver_name: &'static str,
    /// The interface's Ethernet address.
    pub mac: [u8; 6],
    /// Receive buffers the device holds at once (at least 1).
    pub receive_depth: usize,
    /// Transmit buffers the device holds at once (at least 1).
    pub transmit_depth: usize,
    /// Bytes of the device's own header in front of every frame, in every
    /// buffer, both ways (virtio-net's `virtio_net_hdr`; 0 for a device
    /// without one).
    pub header_bytes: u64,
    /// The longest frame (without the device's header), e.g. 1514 bytes of
    /// Ethernet header and payload.
    pub max_frame: u64,
    /// What the device's DMA can do with a buffer.
    pub specification: Specification,
    /// Where the device's DMA goes: the bare machine, or its IOMMU domain.
    pub platform: &'static dyn DmaPlatform,
}

impl NicShape {
    /// Bytes of every buffer: the device's header, then the longest frame.
    pub fn buffer_bytes(&self) -> u64 {
        self.header_bytes + self.max_frame
    }
}

impl core::fmt::Debug for NicShape {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NicShape")
            .field("driver_name", &self.driver_name)
            .field("mac", &self.mac)
            .field("receive_depth", &self.receive_depth)
            .field("transmit_depth", &self.transmit_depth)
            .field("header_bytes", &self.header_bytes)
            .field("max_frame", &self.max_frame)
            .finish()
    }
}

/// What the device did with one buffer, as the driver read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// The device gave receive buffer `slot` back, saying it wrote `length`
    /// bytes from its start, its header included. The layer believes no more
    /// than it prepared.
    Received {
        /// The receive slot.
        slot: Slot,
        /// Bytes the device says it wrote.
        length: u64,
    },
    /// The device gave receive buffer `slot` back with an answer the driver
    /// does not believe (a length above the buffer): no frame, but the buffer
    /// is no longer the device's.
    ReceiveRefused {
        /// The receive slot.
        slot: Slot,
        /// What was wrong.
        failure: IoFailure,
    },
    /// The device read transmit buffer `slot` and gave it back.
    Transmitted {
        /// The transmit slot.
        slot: Slot,
    },
}

/// Whether the device should interrupt when it gives a buffer back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupts {
    /// It should: a handler is registered to quiet it, and the CPU sleeps in
    /// `hlt` until something happens.
    Wanted,
    /// It should not: nobody would quiet it (no handler yet, or none at all),
    /// and the interface is polled.
    Suppressed,
}

/// A network interface as its driver sees it: two rings of slots.
pub trait NetworkHardware: Send + Sync {
    /// The interface's fixed facts (read once, when the layer takes the driver).
    fn shape(&self) -> NicShape;
    /// Gives the device the empty receive buffer `buffer` in free receive slot
    /// `slot`. `Ok`: the device may write it until `collect` reports the slot
    /// (or a quiesce stops the device). `Err`: the device was not given it.
    fn post_receive(&self, slot: Slot, buffer: &LentTransfer<'_>) -> Result<(), IoFailure>;
    /// Gives the device the first `length` bytes of transmit buffer `frame`
    /// (the device's header, then the frame) in free transmit slot `slot`, to
    /// send. `Ok` and `Err` as for `post_receive`.
    fn post_transmit(&self, slot: Slot, frame: &LentTransfer<'_>, length: u64) -> Result<(), IoFailure>;
    /// Looks at the device and reports each buffer it gave back, in its order.
    /// A slot is reported once per post. `MustStop` when the device did
    /// something that leaves its rings untrustworthy (a chain it never held).
    fn collect(&self, event: &mut dyn FnMut(NetEvent)) -> DeviceHealth;
    /// Asks the device to interrupt, or not, when it gives buffers back. A
    /// device starts `Suppressed`: its interrupt is wanted only once a handler
    /// can quiet it (a shared, level-triggered line left asserted would
    /// interrupt for ever).
    fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure>;
    /// In the interrupt handler: quiets the device's interrupt. Returns
    /// whether the device had one. Must neither lock nor allocate.
    fn acknowledge_interrupt(&self) -> bool;
    /// Stops the device so it no longer touches memory, forgetting every
    /// buffer it held; says whether it did. Later posts fail.
    fn quiesce(&self) -> Quiesced;
}
