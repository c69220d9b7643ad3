//! smoltcp's view of a [`NetInterface`]: a `phy::Device` whose receive
//! tokens are the frames the interface handed up and whose transmit tokens
//! write one frame into a free transmit buffer.
//!
//! The frames are copied once more here (from the `Nic`'s frame into a
//! `Vec` that smoltcp reads): the `Nic` hands a frame up inside a call, and
//! smoltcp asks for frames one token at a time. The copies that teach DMA,
//! between the buffers and bounce memory, are the `Nic`'s, and counted there.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::dma::IoFailure;
use crate::net::registry::NetInterface;

/// Frames kept between polls of the interface at most: the receive ring's
/// depth is the most one poll returns.
const MOST_WAITING_FRAMES: usize = 128;

/// A network interface as smoltcp's device.
pub struct InterfaceDevice {
    interface: Arc<dyn NetInterface>,
    /// Frames the interface handed up that smoltcp has not taken yet.
    waiting: VecDeque<Vec<u8>>,
    /// Emptied frames, reused so that steady traffic allocates nothing.
    spare: Vec<Vec<u8>>,
    /// Where a frame to send is built.
    outgoing: Vec<u8>,
    /// Frames the interface took since the last [`take_activity`](Self::take_activity).
    activity: usize,
    /// Whether `receive` may still look at the interface in this round.
    /// smoltcp takes frames until `receive` says none: a sender faster than
    /// the stack would keep one poll inside for ever (nothing served, the
    /// shell starved), so each round looks once.
    look: Look,
    /// Why the last poll or transmit failed, if one did.
    last_failure: Option<IoFailure>,
    /// Frames smoltcp built that the interface refused.
    transmit_failures: u64,
    /// Frames handed up while too many waited: dropped.
    overflowed: u64,
}

impl InterfaceDevice {
    /// smoltcp's device over `interface`.
    pub fn new(interface: Arc<dyn NetInterface>) -> InterfaceDevice {
        InterfaceDevice {
            interface,
            waiting: VecDeque::new(),
            spare: Vec::new(),
            outgoing: Vec::new(),
            activity: 0,
            look: Look::Allowed,
            last_failure: None,
            transmit_failures: 0,
            overflowed: 0,
        }
    }

    /// The interface.
    pub fn interface(&self) -> &Arc<dyn NetInterface> {
        &self.interface
    }

    /// Lets the next `receive` with nothing waiting look at the interface
    /// (once): called before each poll of smoltcp's interface.
    pub fn new_round(&mut self) {
        self.look = Look::Allowed;
    }

    /// Frames received or sent since the last call.
    pub fn take_activity(&mut self) -> usize {
        core::mem::take(&mut self.activity)
    }

    /// Why the last poll or transmit of the interface failed, if one did.
    pub fn last_failure(&self) -> Option<IoFailure> {
        self.last_failure
    }

    /// Frames smoltcp built that the interface refused.
    pub fn transmit_failures(&self) -> u64 {
        self.transmit_failures
    }

    /// Frames the interface handed up while `MOST_WAITING_FRAMES` already
    /// waited for smoltcp: dropped.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Collects what the interface received (when nothing is waiting).
    fn fill(&mut self) {
        let InterfaceDevice { interface, waiting, spare, last_failure, overflowed, .. } = self;
        let result = interface.poll(&mut |frame| {
            if waiting.len() >= MOST_WAITING_FRAMES {
                // Lost like a frame on a wire, and counted.
                *overflowed += 1;
            } else {
                let mut copy = spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(frame);
                waiting.push_back(copy);
            }
        });
        if let Err(failure) = result {
            *last_failure = Some(failure);
        }
    }
}

impl phy::Device for InterfaceDevice {
    type RxToken<'a> = ReceivedFrame<'a>;
    type TxToken<'a> = FrameToSend<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(ReceivedFrame<'_>, FrameToSend<'_>)> {
        if self.waiting.is_empty() && self.look == Look::Allowed {
            self.look = Look::Done;
            self.fill();
        }
        let frame = self.waiting.pop_front()?;
        self.activity += 1;
        let InterfaceDevice { interface, spare, outgoing, last_failure, transmit_failures, activity, .. } = self;
        let sender = FrameToSend { interface, outgoing, last_failure, transmit_failures, activity };
        Some((ReceivedFrame { frame, spare }, sender))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<FrameToSend<'_>> {
        if self.interface.transmit_free() == 0 {
            // Every transmit buffer is the device's: take back those it read.
            self.fill();
            if self.interface.transmit_free() == 0 {
                return None;
            }
        }
        let InterfaceDevice { interface, outgoing, last_failure, transmit_failures, activity, .. } = self;
        Some(FrameToSend { interface, outgoing, last_failure, transmit_failures, activity })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        // 1500 bytes of IP: the NIC's buffers hold 1514-byte frames.
        capabilities.max_transmission_unit = 1514;
        capabilities
    }
}

/// Whether a round may still look at the interface for frames.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Not yet this round.
    Allowed,
    /// It did: what came since waits for the next round.
    Done,
}

/// One received frame, lent to smoltcp.
pub struct ReceivedFrame<'a> {
    frame: Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for ReceivedFrame<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let result = f(&self.frame);
        self.spare.push(self.frame);
        result
    }
}

/// One frame smoltcp builds, sent when it is built.
pub struct FrameToSend<'a> {
    interface: &'a Arc<dyn NetInterface>,
    outgoing: &'a mut Vec<u8>,
    last_failure: &'a mut Option<IoFailure>,
    transmit_failures: &'a mut u64,
    activity: &'a mut usize,
}

impl phy::TxToken for FrameToSend<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, length: usize, f: F) -> R {
        self.outgoing.clear();
        self.outgoing.resize(length, 0);
        let result = f(self.outgoing);
        match self.interface.transmit(self.outgoing) {
            Ok(()) => *self.activity += 1,
            Err(failure) => {
                // Lost like a frame on a wire; TCP sends it again.
                *self.transmit_failures += 1;
                *self.last_failure = Some(failure);
            }
        }
        result
    }
}
