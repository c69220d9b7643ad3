//! `Nic`: the layer that owns a network interface's buffers and their DMA life
//! cycle, so a driver ([`NetworkHardware`]) only programs the device.
//!
//! Every buffer is prepared once, at start, and stays prepared while the
//! interface runs: a receive or transmit ring is the case where
//! `synchronize_range` carries the load (Linux's page_pool maps a page once
//! and syncs per packet). One packet's life (docs/net.md draws it):
//!
//! ```text
//! receive:  start: prepare(In), post_receive           the device's
//!           collect: Received { slot, length }         (length checked)
//!           synchronize_range(In, 0, length)           those bytes -> the CPU
//!           read_bytes(header, ..)                     the frame copied out
//!           synchronize_range(Out, 0, 0), post_receive  nothing copied; the device's
//! transmit: start: prepare(Out)                        nobody's turn yet
//!           synchronize_range(In, 0, 0)                the CPU's; nothing copied
//!           write_bytes(0, zeroed header + frame)
//!           synchronize_range(Out, 0, header + frame)  those bytes -> the device
//!           post_transmit; collect: Transmitted { slot }  free again
//! ```
//!
//! A device is not trusted. A receive length above the buffer, or no longer
//! than the device's header, is not believed: the frame is dropped, counted,
//! its cause kept (`stats().last_drop`), and the buffer posted again. The
//! device handed the buffer back, so it is not using it; only its word about
//! the bytes is wrong (Linux's virtio-net counts such a frame as a length
//! error and recycles the buffer the same way). A device whose rings cannot be
//! believed any more (`DeviceHealth::MustStop`: a chain it never held) is
//! stopped.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::hardware::{Interrupts, NetEvent, NetworkHardware, NicShape};
use super::stats::NicStats;
use super::{DeviceHealth, Quiesced, Slot};
use crate::dma::{
    Cause, DmaBuffer, IoDirection, IoFailure, IoReturn, NetCause, SyncOptions, TransferOptions, TransferSlots,
};
use crate::memory::Constraints;

/// Whether the interface runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicState {
    /// Buffers prepared, the receive ring posted.
    Running,
    /// Stopped: the device was quiesced and every buffer completed (or
    /// abandoned, if it would not stop). Nothing is prepared.
    Stopped,
}

/// Who holds one buffer now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// The device: posted, not given back yet.
    Device,
    /// The layer: prepared, not posted (a transmit buffer waiting for a
    /// frame, or a receive buffer whose post failed and is tried again).
    Layer,
}

/// What one `poll` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Frames handed up.
    pub received: usize,
    /// Transmit buffers the device gave back.
    pub transmitted: usize,
    /// Frames dropped because the device's answer was not believed.
    pub dropped: usize,
}

/// A network interface: a driver and the buffers the device takes turns on.
pub struct Nic<H: NetworkHardware> {
    /// Shared with the interrupt handler, which only acknowledges (without
    /// the lock the owner of a `Nic` may hold when the interrupt comes).
    hardware: Arc<H>,
    shape: NicShape,
    receive: TransferSlots,
    transmit: TransferSlots,
    receive_holders: Vec<Holder>,
    transmit_holders: Vec<Holder>,
    /// Where a received frame is copied out to before it is handed up.
    frame: Vec<u8>,
    /// The device's header as every transmitted frame carries it: zeroes (no
    /// offloads).
    zero_header: Vec<u8>,
    /// What one `collect` reported, kept between polls so that a poll does
    /// not allocate.
    events: Vec<NetEvent>,
    state: NicState,
    stats: NicStats,
}

impl<H: NetworkHardware> Nic<H> {
    /// Takes the driver, allocates one buffer per receive and transmit slot
    /// (the device's header plus the longest frame), prepares each once, with
    /// `options` (a restriction makes them bounce), and posts every receive
    /// buffer. A failure stops the device and gives everything back.
    pub fn start(hardware: H, options: &TransferOptions) -> Result<Nic<H>, IoFailure> {
        let shape = hardware.shape();
        let receive = TransferSlots::new(shape.platform, shape.specification, shape.receive_depth)?;
        let transmit = TransferSlots::new(shape.platform, shape.specification, shape.transmit_depth)?;
        let mut nic = Nic {
            hardware: Arc::new(hardware),
            receive_holders: vec![Holder::Layer; receive.depth()],
            transmit_holders: vec![Holder::Layer; transmit.depth()],
            receive,
            transmit,
            frame: vec![0; shape.max_frame as usize],
            zero_header: vec![0; shape.header_bytes as usize],
            // At most every buffer once per collect.
            events: Vec::with_capacity(shape.receive_depth + shape.transmit_depth),
            shape,
            state: NicState::Running,
            stats: NicStats::default(),
        };
        if let Err(failure) = nic.prepare_all(options) {
            let _ = nic.stop();
            return Err(failure);
        }
        Ok(nic)
    }

    fn prepare_all(&mut self, options: &TransferOptions) -> Result<(), IoFailure> {
        let length = self.shape.buffer_bytes();
        for (slots, direction) in [(&mut self.receive, IoDirection::In), (&mut self.transmit, IoDirection::Out)] {
            for slot in 0..slots.depth() {
                let buffer = DmaBuffer::allocate(self.shape.platform, length, direction, Constraints::NONE)?;
                slots.prepare(slot, buffer, (0, length), direction, options).map_err(|refused| refused.failure)?;
                self.stats.prepares += 1;
            }
        }
        for slot in 0..self.receive.depth() {
            self.post_receive(slot)?;
        }
        Ok(())
    }

    /// The driver's facts about the interface.
    pub fn shape(&self) -> NicShape {
        self.shape
    }

    /// The interface's Ethernet address.
    pub fn mac(&self) -> [u8; 6] {
        self.shape.mac
    }

    /// Whether it runs.
    pub fn state(&self) -> NicState {
        self.state
    }

    /// The counters.
    pub fn stats(&self) -> NicStats {
        self.stats
    }

    /// The driver (for its own statistics and tests).
    pub fn hardware(&self) -> &H {
        &self.hardware
    }

    /// The driver, shared: for an interrupt handler, which may call only
    /// [`NetworkHardware::acknowledge_interrupt`].
    pub fn shared_hardware(&self) -> Arc<H> {
        self.hardware.clone()
    }

    /// Asks the device to interrupt, or not, when it gives buffers back.
    pub fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure> {
        self.hardware.set_interrupts(interrupts)
    }

    /// Transmit buffers free for a frame now.
    pub fn transmit_free(&self) -> usize {
        self.transmit_holders.iter().filter(|holder| **holder == Holder::Layer).count()
    }

    /// Looks at the device: each frame it received is handed to `deliver`
    /// (the frame only, without the device's header; the slice lives for the
    /// call), each transmit buffer it gave back is free again. `NotReady` when
    /// stopped; the device's failure when it had to be stopped.
    pub fn poll(&mut self, deliver: &mut dyn FnMut(&[u8])) -> Result<Polled, IoFailure> {
        if self.state == NicState::Stopped {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped));
        }
        // A receive buffer whose post failed before goes back first.
        for slot in 0..self.receive_holders.len() {
            if self.receive_holders[slot] == Holder::Layer {
                let _ = self.post_receive(slot);
            }
        }
        let mut events = core::mem::take(&mut self.events);
        events.clear();
        let health = self.hardware.collect(&mut |event| events.push(event));
        let mut polled = Polled::default();
        for &event in &events {
            match event {
                NetEvent::Received { slot, length } => match self.receive_frame(slot, length) {
                    Ok(bytes) => {
                        deliver(&self.frame[..bytes]);
                        polled.received += 1;
                    }
                    Err(failure) => {
                        self.drop_frame(failure);
                        polled.dropped += 1;
                    }
                },
                NetEvent::ReceiveRefused { slot, failure } => {
                    if self.take_back(slot).is_ok() {
                        let _ = self.post_receive(slot);
                    }
                    self.drop_frame(failure);
                    polled.dropped += 1;
                }
                NetEvent::Transmitted { slot } => match self.transmit_holders.get_mut(slot) {
                    Some(holder @ Holder::Device) => {
                        *holder = Holder::Layer;
                        self.stats.packets_transmitted += 1;
                        polled.transmitted += 1;
                    }
                    _ => log::error!("net: the driver reported transmit buffer {slot}, which it was not holding"),
                },
            }
        }
        self.events = events;
        // A NIC is not reset and refilled here: a reset request stops it too.
        if let DeviceHealth::MustStop(failure) | DeviceHealth::MustReset(failure) = health {
            log::error!("net: {}: {failure}; stopping the interface", self.shape.driver_name);
            let _ = self.stop();
            return Err(failure);
        }
        Ok(polled)
    }

    /// One received buffer: checks the device's length, takes exactly those
    /// bytes for the CPU, copies the frame out to `self.frame`, gives the
    /// buffer back and posts it again. Returns the frame's bytes. A length
    /// not believed is an error, and the buffer is posted again all the same.
    fn receive_frame(&mut self, slot: Slot, length: u64) -> Result<usize, IoFailure> {
        self.take_back(slot)?;
        let prepared = self.shape.buffer_bytes();
        let header = self.shape.header_bytes;
        let checked = if length > prepared {
            Err(IoFailure::new(IoReturn::Overrun, Cause::DeviceClaimedTooMuch { claimed: length, prepared }))
        } else if length <= header {
            Err(IoFailure::new(IoReturn::Underrun, Cause::Net(NetCause::NoFrameAfterHeader { length, header })))
        } else {
            Ok(())
        };
        let copied = checked.and_then(|()| {
            self.synchronize(Ring::Receive, slot, SyncOptions::IN, length)?;
            let frame = (length - header) as usize;
            self.receive.read_bytes(slot, header, &mut self.frame[..frame])?;
            // Back to the device: it overwrites the buffer, so nothing is copied.
            self.synchronize(Ring::Receive, slot, SyncOptions::OUT, 0)?;
            Ok(frame)
        });
        let posted = self.post_receive(slot);
        let frame = copied?;
        posted?;
        self.stats.packets_received += 1;
        self.stats.bytes_received += frame as u64;
        Ok(frame)
    }

    /// Marks receive buffer `slot` as back from the device (the driver said
    /// so); `SlotNotPosted` if the device was not holding it.
    fn take_back(&mut self, slot: Slot) -> Result<(), IoFailure> {
        match self.receive_holders.get_mut(slot) {
            Some(holder @ Holder::Device) => {
                *holder = Holder::Layer;
                Ok(())
            }
            _ => Err(IoFailure::new(IoReturn::InternalError, Cause::Net(NetCause::SlotNotPosted { slot }))),
        }
    }

    fn drop_frame(&mut self, failure: IoFailure) {
        log::warn!("net: {}: frame dropped: {failure}", self.shape.driver_name);
        self.stats.dropped += 1;
        self.stats.last_drop = Some(failure);
    }

    /// Lends receive buffer `slot` to the driver to post.
    fn post_receive(&mut self, slot: Slot) -> Result<(), IoFailure> {
        let lent = self.receive.lend(slot).ok_or(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared))?;
        self.hardware.post_receive(slot, &lent).inspect_err(|failure| {
            log::error!("net: {}: receive buffer {slot} not posted: {failure}", self.shape.driver_name);
        })?;
        self.receive_holders[slot] = Holder::Device;
        Ok(())
    }

    /// Sends `frame` (an Ethernet frame, without the device's header) in a
    /// free transmit buffer: the buffer is taken for the CPU, a zeroed header
    /// (no offloads) and the frame are written, exactly those bytes given to
    /// the device, and the driver posts them. `Busy` (`TransmitRingFull`) when
    /// every transmit buffer is the device's: poll, then try again.
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), IoFailure> {
        if self.state == NicState::Stopped {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::DriverStopped));
        }
        let (length, max) = (frame.len() as u64, self.shape.max_frame);
        if frame.is_empty() || length > max {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::Net(NetCause::FrameLength { length, max })));
        }
        let Some(slot) = self.transmit_holders.iter().position(|holder| *holder == Holder::Layer) else {
            self.stats.transmit_ring_full += 1;
            let depth = self.transmit_holders.len();
            return Err(IoFailure::new(IoReturn::Busy, Cause::Net(NetCause::TransmitRingFull { depth })));
        };
        let header = self.shape.header_bytes;
        // The CPU's turn; the device wrote nothing, so nothing is copied.
        self.synchronize(Ring::Transmit, slot, SyncOptions::IN, 0)?;
        self.transmit.write_bytes(slot, 0, &self.zero_header)?;
        self.transmit.write_bytes(slot, header, frame)?;
        self.synchronize(Ring::Transmit, slot, SyncOptions::OUT, header + length)?;
        let lent = self.transmit.lend(slot).ok_or(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared))?;
        self.hardware.post_transmit(slot, &lent, header + length)?;
        self.transmit_holders[slot] = Holder::Device;
        self.stats.bytes_transmitted += length;
        Ok(())
    }

    /// `synchronize_range(options, 0, length)` on a slot of `ring`, counted,
    /// with the bytes it copied (the platform's bounce counters before and
    /// after: exact while nothing else copies on the platform meanwhile).
    fn synchronize(&mut self, ring: Ring, slot: Slot, options: SyncOptions, length: u64) -> Result<(), IoFailure> {
        let accounting = self.shape.platform.accounting();
        let copied = || {
            let stats = accounting.stats();
            stats.bytes_to_bounce + stats.bytes_from_bounce
        };
        let before = copied();
        let slots = match ring {
            Ring::Receive => &mut self.receive,
            Ring::Transmit => &mut self.transmit,
        };
        let result = slots.synchronize_range(slot, options, (0, length));
        self.stats.synchronizes += 1;
        self.stats.bytes_copied_by_synchronize += copied() - before;
        result
    }

    /// Stops the interface: the device is quiesced first, then every buffer
    /// completed with nothing moved and freed, or, if the device would not
    /// stop, abandoned (leaked, never reused). `Err` says it would not stop.
    pub fn stop(&mut self) -> Result<(), IoFailure> {
        if self.state == NicState::Stopped {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::DriverStoppedAlready));
        }
        self.state = NicState::Stopped;
        let quiesced = self.hardware.quiesce();
        for slots in [&mut self.receive, &mut self.transmit] {
            for slot in 0..slots.depth() {
                match quiesced {
                    Quiesced::Stopped => drop(slots.complete(slot, 0)),
                    Quiesced::StillRunning(_) => drop(slots.abandon(slot)),
                }
            }
            slots.check_stopped();
        }
        self.receive_holders.fill(Holder::Layer);
        self.transmit_holders.fill(Holder::Layer);
        match quiesced {
            Quiesced::Stopped => Ok(()),
            Quiesced::StillRunning(failure) => Err(failure),
        }
    }
}

impl<H: NetworkHardware> Drop for Nic<H> {
    /// A running interface is stopped first: no buffer goes back while the
    /// device may still use it.
    fn drop(&mut self) {
        if self.state == NicState::Running
            && let Err(failure) = self.stop()
        {
            log::error!("net: {} dropped without a stopped device: {failure}", self.shape.driver_name);
        }
    }
}

/// Which ring a slot belongs to.
#[derive(Clone, Copy)]
enum Ring {
    Receive,
    Transmit,
}
