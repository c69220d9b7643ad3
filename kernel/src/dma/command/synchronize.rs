//! `synchronize`: bringing a prepared command's descriptor and its bounce
//! buffers into sync while the command stays prepared, whole (IOKit's call) or
//! for a range of bytes (an addition, for buffers that stay prepared and carry
//! a different number of bytes each time, like a network card's receive ring).

use core::ops::Range;
use core::panic::Location;

use super::{IoDmaCommand, Prepared, trace_segments};
use crate::dma::bounce::Maintenance;
use crate::dma::descriptor::Holder;
use crate::dma::failure::{Cause, IoFailure};
use crate::dma::misuse::Misuse;
use crate::dma::realization;
use crate::dma::trace::dma_trace;
use crate::dma::{IoDirection, IoReturn, SyncOptions};

/// Which bytes of the prepared range a synchronize copies.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Extent {
    /// All of them (`synchronize`).
    Whole,
    /// These, counted from the start of the prepared range (`synchronize_range`).
    Bytes(Range<u64>),
}

impl Extent {
    fn window(&self) -> Range<u64> {
        match self {
            Extent::Whole => 0..u64::MAX,
            Extent::Bytes(bytes) => bytes.clone(),
        }
    }
}

impl IoDmaCommand {
    /// Brings descriptor and bounce buffers into sync (`synchronize`):
    /// `OUT` copies descriptor -> bounce, `IN` bounce -> descriptor (whatever the
    /// descriptor's direction), `FORCE_DOUBLE_BUFFER` moves the whole prepared
    /// range into one new page-aligned buffer. `BadArgument` for invalid options,
    /// `NotReady` if not prepared.
    #[track_caller]
    pub fn synchronize(&mut self, options: SyncOptions) -> Result<(), IoReturn> {
        self.synchronize_for(options, Location::caller()).map_err(|failure| failure.code())
    }

    /// `synchronize`, saying why it fails.
    pub(crate) fn synchronize_for(
        &mut self,
        options: SyncOptions,
        at: &'static Location<'static>,
    ) -> Result<(), IoFailure> {
        options.validate().map_err(|code| IoFailure::new(code, Cause::InvalidSyncOptions))?;
        let Some(mut prepared) = self.prepared.take() else {
            self.report(Misuse::SynchronizeWithoutPrepare, at);
            return Err(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
        };
        let result = self.synchronize_prepared(&mut prepared, options, Extent::Whole, at);
        self.prepared = Some(prepared);
        result
    }

    /// `synchronize` for bytes `[offset, offset + length)` of the prepared range
    /// only (an addition to IOKit's call, like Linux's
    /// `dma_sync_single_range_for_cpu`/`_for_device`): `IN` copies those bytes
    /// bounce -> descriptor, `OUT` descriptor -> bounce; nothing else moves.
    /// Unlike a whole `synchronize(In)`, a ranged one is allowed on an `In`
    /// transfer whose bounce memory was never filled: the caller names the
    /// bytes the device reported writing, so no stale byte comes back.
    /// `BadArgument` for invalid options or `FORCE_DOUBLE_BUFFER` (it moves the
    /// whole range), `Overrun` for bytes past the prepared range, `NotReady` if
    /// not prepared.
    #[track_caller]
    pub fn synchronize_range(&mut self, options: SyncOptions, offset: u64, length: u64) -> Result<(), IoReturn> {
        self.synchronize_range_for(options, (offset, length), Location::caller()).map_err(|failure| failure.code())
    }

    /// `synchronize_range`, saying why it fails.
    pub(crate) fn synchronize_range_for(
        &mut self,
        options: SyncOptions,
        (offset, length): (u64, u64),
        at: &'static Location<'static>,
    ) -> Result<(), IoFailure> {
        options.validate().map_err(|code| IoFailure::new(code, Cause::InvalidSyncOptions))?;
        if options.contains(SyncOptions::FORCE_DOUBLE_BUFFER) {
            return Err(IoFailure::new(IoReturn::BadArgument, Cause::RangedForceDoubleBuffer));
        }
        let Some(mut prepared) = self.prepared.take() else {
            self.report(Misuse::SynchronizeWithoutPrepare, at);
            return Err(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
        };
        let size = prepared.length;
        let result = match offset.checked_add(length) {
            Some(end) if end <= size => {
                self.synchronize_prepared(&mut prepared, options, Extent::Bytes(offset..end), at)
            }
            _ => Err(IoFailure::new(IoReturn::Overrun, Cause::OutOfRange { offset, length, size })),
        };
        self.prepared = Some(prepared);
        result
    }

    fn synchronize_prepared(
        &self,
        prepared: &mut Prepared,
        options: SyncOptions,
        extent: Extent,
        at: &'static Location<'static>,
    ) -> Result<(), IoFailure> {
        let descriptor = self.descriptor.clone().ok_or(IoFailure::new(IoReturn::NotReady, Cause::NoMemoryBound))?;
        dma_trace!("synchronize({}): command #{}", describe_options(options), self.id);
        let force = options.contains(SyncOptions::FORCE_DOUBLE_BUFFER);
        if force && descriptor.is_coherent() {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::CoherentNeverBounced));
        }
        if options.contains(SyncOptions::IN) && !prepared.filled && extent == Extent::Whole {
            // The bounce memory holds what the device wrote and, past that, stale
            // bytes: only `complete_moved` knows how many are the device's.
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::InTransferNotFilled));
        }
        let mut released = Ok(());
        if force && !prepared.realization.layout.wholly_double_buffered() {
            let realizer = self.realizer(&descriptor, at);
            let single = realizer.single(prepared.length)?;
            self.statistics.count_forced_double_buffer();
            prepared.counted.forced_double_buffer();
            if descriptor.direction().includes_in() {
                // The old memory's unmap: what the device wrote there, bounced
                // or in place, is read from memory (a non-coherent machine).
                self.maintain(&descriptor, prepared, Maintenance::Invalidate, 0..u64::MAX, "leave the old memory");
            }
            if descriptor.direction().includes_in() && prepared.filled {
                let why = "keep what the device already wrote";
                let bytes = self.copy(&descriptor, prepared, IoDirection::In, 0..u64::MAX, why);
                prepared.counted.copied(IoDirection::In, bytes);
            }
            let old = core::mem::replace(&mut prepared.realization, single);
            // The old memory is given back only if the IOMMU confirms it is out
            // of the device's reach; the move is done either way.
            released = realizer.release(&old);
            // The device may have used the old mapping: what the IOMMU found
            // there (took at its unmap) is this transfer's, reported at complete.
            if let (Ok(()), Some(range), Some(domain)) = (&released, old.mapped, self.domain) {
                prepared.refused = prepared.refused.or(realization::refusal(domain, range));
            }
            let bytes = self.fill(&descriptor, prepared, "fill the new buffer");
            prepared.counted.copied(IoDirection::Out, bytes);
            // The new buffer's map: the device reads it from memory.
            self.maintain(&descriptor, prepared, Maintenance::Clean, 0..u64::MAX, "the new buffer");
            prepared.filled = true;
            trace_segments(&prepared.realization.segments);
        }
        if options.contains(SyncOptions::IN) {
            // Drop the CPU's stale copy of what the device wrote, then copy.
            self.maintain(&descriptor, prepared, Maintenance::Invalidate, extent.window(), "synchronize(In)");
            let bytes = self.copy(&descriptor, prepared, IoDirection::In, extent.window(), "synchronize(In)");
            prepared.counted.copied(IoDirection::In, bytes);
            if prepared.holder == Holder::Device {
                descriptor.set_device_owned(false);
                prepared.holder = Holder::Cpu;
            }
        }
        if options.contains(SyncOptions::OUT) {
            let bytes = self.copy(&descriptor, prepared, IoDirection::Out, extent.window(), "synchronize(Out)");
            prepared.counted.copied(IoDirection::Out, bytes);
            // Copy, then write the CPU's bytes back to where the device reads.
            self.maintain(&descriptor, prepared, Maintenance::Clean, extent.window(), "synchronize(Out)");
            // Only a whole copy makes every bounce byte the descriptor's.
            prepared.filled |= extent == Extent::Whole;
            if prepared.holder == Holder::Cpu {
                descriptor.set_device_owned(true);
                prepared.holder = Holder::Device;
            }
        }
        released
    }
}

impl IoDmaCommand {
    /// The CPU's turn on a transfer that stays prepared: copies bytes of the
    /// prepared range from `offset` into `out` (fewer at its end). Only while
    /// the CPU holds the memory, after `synchronize(In)` or
    /// `synchronize_range(In)`: otherwise `NotPermitted`, the device's.
    pub(crate) fn cpu_read(
        &self,
        offset: u64,
        out: &mut [u8],
        at: &'static Location<'static>,
    ) -> Result<usize, IoFailure> {
        let (start, count) = self.cpu_turn(offset, out.len())?;
        let descriptor = self.descriptor.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::NoMemoryBound))?;
        descriptor.read_at(start, &mut out[..count], at)
    }

    /// The CPU's turn, writing: `data` to bytes of the prepared range from
    /// `offset` (fewer at its end). The device sees them only after a
    /// `synchronize(Out)` or `synchronize_range(Out)` that covers them.
    pub(crate) fn cpu_write(
        &self,
        offset: u64,
        data: &[u8],
        at: &'static Location<'static>,
    ) -> Result<usize, IoFailure> {
        let (start, count) = self.cpu_turn(offset, data.len())?;
        let descriptor = self.descriptor.as_ref().ok_or(IoFailure::new(IoReturn::NotReady, Cause::NoMemoryBound))?;
        descriptor.write_at(start, &data[..count], at)
    }

    /// Where in the descriptor `wanted` bytes from `offset` of the prepared
    /// range lie, and how many fit, if the CPU holds the memory now.
    fn cpu_turn(&self, offset: u64, wanted: usize) -> Result<(u64, usize), IoFailure> {
        let Some(prepared) = self.prepared.as_ref() else {
            return Err(IoFailure::new(IoReturn::NotReady, Cause::NotPrepared));
        };
        if prepared.holder == Holder::Device {
            return Err(IoFailure::new(IoReturn::NotPermitted, Cause::DeviceOwnsMemory));
        }
        if offset >= prepared.length {
            let cause = Cause::OutOfRange { offset, length: wanted as u64, size: prepared.length };
            return Err(IoFailure::new(IoReturn::Overrun, cause));
        }
        let count = (wanted as u64).min(prepared.length - offset) as usize;
        Ok((prepared.offset + offset, count))
    }
}

/// `In`, `Out`, `ForceDoubleBuffer` joined with `|`.
fn describe_options(options: SyncOptions) -> &'static str {
    let force = options.contains(SyncOptions::FORCE_DOUBLE_BUFFER);
    match (force, options.contains(SyncOptions::IN), options.contains(SyncOptions::OUT)) {
        (true, true, _) => "ForceDoubleBuffer | In",
        (true, _, true) => "ForceDoubleBuffer | Out",
        (true, _, _) => "ForceDoubleBuffer",
        (false, true, _) => "In",
        _ => "Out",
    }
}
