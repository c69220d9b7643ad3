//! `DmaTransfer`: a buffer prepared for one device, as a value.
//!
//! Preparing takes the buffer, by move (a transfer that outlives the call that
//! started it, finished later from an interrupt) or by exclusive borrow (a
//! transfer that ends before the call returns). While the transfer lives, the
//! CPU cannot touch the buffer: the compiler refuses. The transfer shows the
//! device's segments, can `synchronize`, and gives the buffer back only through
//! [`DmaTransfer::complete`], told how many bytes the device moved, so that
//! exactly those come back from a bounce buffer and nothing stale ever does.
//!
//! Whoever owns a request's life cycle (the block layer, through
//! [`super::TransferSlots`]; a test; a one-off like the shell's experiments)
//! prepares, lets the device work, and completes:
//!
//! ```text
//! let data = DmaTransfer::prepare(command, buffer, offset, length, &options)?;
//! ... give the device data.segments() (a driver is lent them); wait ...
//! let completed = data.complete(bytes_the_device_moved);
//! ```
//!
//! An early `?` drops the transfer: one whose segments no device has seen is
//! completed quietly. One whose segments were handed out is never freed by a
//! drop (a device may still write it): it is leaked and reported. The owner
//! stops the device and then completes, or [`DmaTransfer::abandon`]s.
//!
//! The buffer stays the driver's client's: this does not compile, because the
//! transfer holds the buffer exclusively until it is completed:
//!
//! ```compile_fail,E0502
//! use dmakit::dma::{simulated::SimulatedPlatform, DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand};
//! use dmakit::dma::{Specification, TransferOptions};
//! use dmakit::memory::Constraints;
//!
//! let platform = SimulatedPlatform::leak(16);
//! let mut buffer = DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
//! let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
//! let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default())
//!     .map_err(|refused| refused.failure)
//!     .unwrap();
//! let mut peek = [0u8; 16];
//! buffer.read_bytes(0, &mut peek).unwrap(); // the device owns the buffer: error E0502
//! transfer.complete(4096);
//! ```
//!
//! and neither does this, for a buffer moved into the transfer:
//!
//! ```compile_fail,E0382
//! use dmakit::dma::{simulated::SimulatedPlatform, DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand};
//! use dmakit::dma::{Specification, TransferOptions};
//! use dmakit::memory::Constraints;
//!
//! let platform = SimulatedPlatform::leak(16);
//! let mut buffer = DmaBuffer::allocate(platform, 4096, IoDirection::Out, Constraints::NONE).unwrap();
//! let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
//! let transfer = DmaTransfer::prepare(command, buffer, 0, 0, &TransferOptions::default());
//! buffer.write_bytes(0, &[1, 2, 3]).unwrap(); // moved into the transfer: error E0382
//! ```
//!
//! (rustdoc checks those error codes only on nightly; `kernel/tests/compile_fail/`
//! checks the exact error of each misuse, on stable.)
//!
//! The same program, with the CPU access after `complete`, compiles and runs:
//!
//! ```
//! use dmakit::dma::{simulated::SimulatedPlatform, DmaBuffer, DmaTransfer, IoDirection, IoDmaCommand};
//! use dmakit::dma::{Specification, TransferOptions};
//! use dmakit::memory::Constraints;
//!
//! let platform = SimulatedPlatform::leak(16);
//! let mut buffer = DmaBuffer::allocate(platform, 4096, IoDirection::In, Constraints::NONE).unwrap();
//! let mut command = IoDmaCommand::new(platform, Specification::UNLIMITED_32).unwrap();
//! let transfer = DmaTransfer::prepare(&mut command, &mut buffer, 0, 0, &TransferOptions::default())
//!     .map_err(|refused| refused.failure)
//!     .unwrap();
//! let segment = transfer.segments()[0];
//! assert!(segment.address.as_u64() < 1 << 32, "bounced below 4 GiB for a 32-bit device");
//! platform.device_write(segment.address.as_u64(), &[7; 4096]); // the device writes
//! transfer.complete(4096).result.unwrap();
//! let mut peek = [0u8; 16];
//! buffer.read_bytes(0, &mut peek).unwrap();
//! assert_eq!(peek, [7; 16]);
//! ```

use core::borrow::BorrowMut;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, Ordering};

use super::command::Completion;
use super::failure::{Cause, IoFailure};
use super::misuse::Misuse;
use super::{DmaBuffer, IoDmaCommand, IoReturn, Segment, SyncOptions, TransferOptions};

/// A buffer prepared for a device: the device owns it until `complete`.
///
/// `B` is the buffer, owned (`DmaBuffer`) or exclusively borrowed
/// (`&mut DmaBuffer`); `C` the driver's command, owned (taken from a pool) or
/// borrowed.
#[derive(Debug)]
#[must_use = "a prepared transfer must be completed; dropped after its segments were handed out, it leaks its memory"]
pub struct DmaTransfer<B: BorrowMut<DmaBuffer>, C: BorrowMut<IoDmaCommand>> {
    /// `None` only inside `complete` and `abandon`.
    buffer: Option<B>,
    /// The driver's command; it does the transfer unless `restricted` does.
    command: Option<C>,
    /// A command with the driver's specification tightened for this transfer.
    restricted: Option<IoDmaCommand>,
    /// Bytes prepared.
    length: u64,
    /// Whether the segments were handed out: from then on a device may use them.
    handed_out: AtomicBool,
    at: &'static Location<'static>,
}

/// What [`DmaTransfer::complete`] gives back: the buffer, the command, and how
/// the transfer ended.
#[derive(Debug)]
pub struct Completed<B, C> {
    /// The buffer, the CPU's again.
    pub buffer: B,
    /// The command, unbound and ready for the next transfer.
    pub command: C,
    /// `Ok`, or `Underrun` when the device moved fewer bytes than prepared.
    pub result: Result<(), IoFailure>,
}

/// What a failed [`DmaTransfer::prepare`] gives back: why, and the buffer and
/// command untouched.
#[derive(Debug)]
pub struct Refused<B, C> {
    /// Why the buffer could not be prepared.
    pub failure: IoFailure,
    /// The buffer, still the caller's.
    pub buffer: B,
    /// The command, unbound.
    pub command: C,
}

impl<B, C> From<Refused<B, C>> for IoFailure {
    fn from(refused: Refused<B, C>) -> IoFailure {
        refused.failure
    }
}

/// Whether the device says how many bytes it moved, which decides what an
/// `In` transfer's bounce memory must hold before the device writes into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ByteCount {
    /// The device reports the bytes it wrote (virtio's used length), and
    /// `complete` is given that count: only those bytes come back, so the
    /// bounce memory needs no fill.
    #[default]
    Reported,
    /// The device only says "done" (IDE, AHCI under NCQ, NVMe), and
    /// `complete` is given the whole length: the bounce memory starts as a
    /// copy of the buffer, so a byte the device did not write keeps the
    /// buffer's own value, never what an earlier owner of the bounce frame
    /// left there. (Linux's swiotlb fills for this reason since CVE-2022-0854.)
    Assumed,
}

impl<B: BorrowMut<DmaBuffer>, C: BorrowMut<IoDmaCommand>> DmaTransfer<B, C> {
    /// Prepares `[offset, offset + length)` of `buffer` (`length` 0: to the end)
    /// for the device `command` serves, as `options` ask (a tighter
    /// specification for this transfer, forced double buffering). The transfer
    /// will be completed with the device's byte count, so an `In` buffer's bounce
    /// memory is not filled first: only what the device wrote comes back.
    /// `Busy` if the command is in use already.
    #[track_caller]
    pub fn prepare(
        command: C,
        buffer: B,
        offset: u64,
        length: u64,
        options: &TransferOptions,
    ) -> Result<DmaTransfer<B, C>, Refused<B, C>> {
        Self::prepare_counted(command, buffer, (offset, length), options, ByteCount::Reported)
    }

    /// [`DmaTransfer::prepare`] for a device whose byte count is `count`: with
    /// [`ByteCount::Assumed`] an `In` buffer's bounce memory is filled from the
    /// buffer first, so completing with the whole length never hands the
    /// caller bytes nobody wrote for it.
    #[track_caller]
    pub fn prepare_counted(
        mut command: C,
        buffer: B,
        (offset, length): (u64, u64),
        options: &TransferOptions,
        count: ByteCount,
    ) -> Result<DmaTransfer<B, C>, Refused<B, C>> {
        let at = Location::caller();
        let completion = match count {
            ByteCount::Reported => Completion::DeviceCount,
            ByteCount::Assumed => Completion::WholeRange,
        };
        let refuse = |failure, buffer, command| Err(Refused { failure, buffer, command });
        if !command.borrow().is_idle() {
            return refuse(IoFailure::new(IoReturn::Busy, Cause::CommandInUse), buffer, command);
        }
        let mut restricted = match options.restrict {
            None => None,
            Some(restrict) => {
                let driver = command.borrow_mut();
                let specification = driver.specification().restricted_by(&restrict);
                match IoDmaCommand::new(driver.platform(), specification) {
                    Ok(restricted) => Some(restricted),
                    Err(code) => {
                        let cause = Cause::BadSpecification("the restriction gives an invalid specification");
                        return refuse(IoFailure::new(code, cause), buffer, command);
                    }
                }
            }
        };
        // Bind and prepare the command that does the transfer (and, if asked,
        // force double buffering); on failure it is unbound and unprepared again.
        let active = restricted.as_mut().unwrap_or_else(|| command.borrow_mut());
        let mut prepared = active
            .set_memory_descriptor(buffer.borrow().descriptor.clone(), false)
            .map_err(|code| IoFailure::new(code, Cause::CommandInUse))
            .and_then(|()| active.prepare_for(offset, length, completion, at));
        if prepared.is_ok() && options.force_double_buffer {
            // The move fills the new buffer from the descriptor: by contract it
            // copies the whole range, whatever the direction.
            if let Err(failure) = active.synchronize_for(SyncOptions::FORCE_DOUBLE_BUFFER, at) {
                // No device has seen these segments: release without copying,
                // and take the prepare back out of the statistics too, so a
                // refused prepare reads there as one that never happened.
                active.withdraw_prepare(at);
                prepared = Err(failure);
            }
        }
        let length = match prepared {
            Ok(length) => length,
            Err(failure) => {
                // Not prepared now, so unbinding cannot fail.
                let _ = active.clear_memory_descriptor(false);
                return refuse(failure, buffer, command);
            }
        };
        Ok(DmaTransfer {
            buffer: Some(buffer),
            command: Some(command),
            restricted,
            length,
            handed_out: AtomicBool::new(false),
            at,
        })
    }

    fn active(&self) -> &IoDmaCommand {
        match (&self.restricted, &self.command) {
            (Some(restricted), _) => restricted,
            (None, Some(command)) => command.borrow(),
            (None, None) => unreachable!("a live transfer holds its command"),
        }
    }

    fn active_mut(&mut self) -> &mut IoDmaCommand {
        match (&mut self.restricted, &mut self.command) {
            (Some(restricted), _) => restricted,
            (None, Some(command)) => command.borrow_mut(),
            (None, None) => unreachable!("a live transfer holds its command"),
        }
    }

    /// The device's segments, in order. From this call on, a device may hold
    /// them: the transfer must be completed (or abandoned), never just dropped.
    pub fn segments(&self) -> &[Segment] {
        self.handed_out.store(true, Ordering::Relaxed);
        self.active().segments()
    }

    /// Writes segments from `offset` into `output` as records in the device's
    /// output format (`IODMACommand::writeSegments`); returns how many and the
    /// offset after them. Hands the segments out, as [`DmaTransfer::segments`].
    pub fn write_segments(&self, offset: u64, output: &mut [u8]) -> Result<(usize, u64), IoFailure> {
        self.handed_out.store(true, Ordering::Relaxed);
        let prepared = self.length();
        // The contract call says only its code; each code has one reason here.
        self.active().write_segments(offset, output).map_err(|code| {
            let cause = match code {
                IoReturn::Overrun => Cause::OutOfRange { offset, length: 0, size: prepared },
                IoReturn::BadArgument => Cause::OutputTooSmall {
                    bytes: output.len(),
                    record: self.active().specification().output.record_size(),
                },
                IoReturn::MessageTooLarge => Cause::EntryFormat {
                    format: "output record",
                    rule: "a segment's address and length fit the record's width",
                },
                IoReturn::NotReady => Cause::NotPrepared,
                _ => Cause::Unspecified,
            };
            IoFailure::new(code, cause)
        })
    }

    /// The command doing the transfer, to look at (bounce buffers, rules). It
    /// can show the segments too, so this hands them out as
    /// [`DmaTransfer::segments`] does.
    pub fn command(&self) -> &IoDmaCommand {
        self.handed_out.store(true, Ordering::Relaxed);
        self.active()
    }

    /// Bytes prepared.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Brings the buffer and its bounce memory into sync, as
    /// [`IoDmaCommand::synchronize`]. `synchronize(In)` is refused for an `In`
    /// transfer whose bounce memory was never filled: only the device's byte
    /// count says which of its bytes are real (give it to `complete`, or to
    /// [`DmaTransfer::synchronize_range`]).
    /// `ForceDoubleBuffer` is refused once the segments were handed out: it
    /// frees the old bounce memory, which a device may still be using.
    #[track_caller]
    pub fn synchronize(&mut self, options: SyncOptions) -> Result<(), IoFailure> {
        let at = Location::caller();
        if options.contains(SyncOptions::FORCE_DOUBLE_BUFFER) && self.handed_out.load(Ordering::Relaxed) {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::DeviceHasSegments));
        }
        self.active_mut().synchronize_for(options, at)
    }

    /// Brings bytes `[offset, offset + length)` of the prepared range into sync,
    /// as [`IoDmaCommand::synchronize_range`], and the transfer stays prepared.
    /// For a buffer the device fills again and again: after the device reports
    /// `n` bytes, `synchronize_range(In, 0, n)` gives the CPU exactly those;
    /// `synchronize_range(Out, ..)` gives bytes the CPU wrote to the device.
    #[track_caller]
    pub fn synchronize_range(&mut self, options: SyncOptions, offset: u64, length: u64) -> Result<(), IoFailure> {
        self.active_mut().synchronize_range_for(options, (offset, length), Location::caller())
    }

    /// The CPU reads the buffer while the transfer stays prepared: bytes of the
    /// prepared range from `offset` into `out` (fewer at its end). Only after
    /// `synchronize(In)` or `synchronize_range(In)` handed the memory to the CPU
    /// (`NotPermitted` while the device holds it); bytes outside what was
    /// synchronized may be stale.
    #[track_caller]
    pub fn read_bytes(&self, offset: u64, out: &mut [u8]) -> Result<usize, IoFailure> {
        self.active().cpu_read(offset, out, Location::caller())
    }

    /// The CPU writes the buffer while the transfer stays prepared (a frame to
    /// send): `data` to the prepared range from `offset`. Only while the CPU
    /// holds the memory; the device sees the bytes after a `synchronize(Out)`
    /// or `synchronize_range(Out)` that covers them.
    #[track_caller]
    pub fn write_bytes(&mut self, offset: u64, data: &[u8]) -> Result<usize, IoFailure> {
        self.active().cpu_write(offset, data, Location::caller())
    }

    /// Ends the transfer after the device moved `moved` bytes (from the start of
    /// the prepared range): exactly those are copied back from bounce memory,
    /// the bounce memory is freed, and the buffer and command come back. The
    /// device must be done with the memory (finished, or stopped).
    #[track_caller]
    pub fn complete(mut self, moved: u64) -> Completed<B, C> {
        let at = Location::caller();
        let mut result = self.active_mut().complete_moved(moved, at);
        if let Some(restricted) = self.restricted.as_mut() {
            let _ = restricted.clear_memory_descriptor(false);
        }
        let mut command = self.command.take().expect("a live transfer holds its command");
        if command.borrow_mut().clear_memory_descriptor(false).is_err() && result.is_ok() {
            result = Err(IoFailure::new(IoReturn::NotReady, Cause::StayedPrepared));
        }
        let buffer = self.buffer.take().expect("a live transfer holds its buffer");
        Completed { buffer, command, result }
    }

    /// Gives the transfer up because its device could not be stopped: the
    /// buffer's memory and the bounce memory are leaked, never reused (and the
    /// CPU may no longer read the buffer). The debugging log says so. The
    /// command comes back, unbound.
    #[track_caller]
    pub fn abandon(mut self) -> C {
        let at = Location::caller();
        self.active_mut().abandon(Misuse::AbandonedWhileDeviceOwned, at);
        self.command.take().expect("a live transfer holds its command")
    }
}

impl<B: BorrowMut<DmaBuffer>, C: BorrowMut<IoDmaCommand>> Drop for DmaTransfer<B, C> {
    /// Dropped before `complete`: if no device saw the segments, the memory is
    /// released without copying anything back; otherwise it is leaked, because
    /// a device may still write it, and the debugging log says which.
    fn drop(&mut self) {
        if self.command.is_none() {
            return;
        }
        let at = self.at;
        if self.handed_out.load(Ordering::Relaxed) {
            self.active_mut().abandon(Misuse::TransferDroppedWhileDeviceOwned, at);
        } else {
            let _ = self.active_mut().complete_moved(0, at);
        }
        if let Some(command) = self.command.as_mut() {
            let _ = command.borrow_mut().clear_memory_descriptor(false);
        }
    }
}
