//! Namespace 1 of an NVMe controller as a [`HardwareQueue`]: bring-up, one I/O
//! queue pair whose command ids are the block layer's slots, and stop.
//!
//! Bring-up (`bring_up.rs`): disable (CSTS.RDY 0 within CAP.TO), give the admin queue (AQA,
//! ASQ, ACQ), enable, Identify Controller (MDTS, SGL support, entry sizes) and
//! Namespace (size, block size from the LBA format), Create I/O Completion
//! Queue then Submission Queue 1, as deep as CAP.MQES allows up to
//! [`MAX_DEPTH`] slots.
//!
//! One request: the block layer prepares the buffer under
//! [`NvmeDisk::shape`]'s specification (dword aligned, internal segments page
//! aligned, at most the request size MDTS allows) and lends it to `program`,
//! which builds the data pointer from the typed segments (PRPs, with the
//! slot's own PRP list pages, or an SGL above the threshold when the
//! controller takes SGLs), writes the command with the slot as its id, and
//! rings the tail doorbell. `collect` reads the completions by phase tag and
//! reports each slot once.
//!
//! A flush is the NVM command set's Flush (opcode 0) on namespace 1 with the
//! slot as its id and no data pointer; it is asked for only when Identify
//! Controller says a volatile write cache is present (VWC bit 0), and its
//! completion is reported with nothing moved.
//!
//! Recovery: CSTS.CFS makes `collect` ask for a reset (`MustReset`); a
//! completion that lies asks for a stop. A reset is a stop and a start, after
//! which the block layer issues again what the controller held.
//!
//! Stop: a normal shutdown first (CC.SHN = 01b, CSTS.SHST = 10b awaited; a
//! reset skips it), then CC.EN = 0 and CSTS.RDY = 0 awaited before any queue,
//! list page or data goes back; a controller that stays ready keeps all of it
//! (leaked). One that never reports its shutdown is disabled all the same,
//! and [`NvmeDisk::last_shutdown`] says so with a typed cause.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dmakit::block::{
    BlockCommand, BlockOperation, DeviceHealth, DeviceOutcome, DiskShape, HardwareQueue, Quiesced, Recovery, Slot,
    claim_slot,
};
use dmakit::dma::hooks::{self, DriverCheck, Site};
use dmakit::dma::{
    ByteCount, Cause, CoherentMemory, DeviceStatus, DmaPlatform, IoFailure, IoReturn, LentTransfer, NvmeCause,
    Specification,
};
use dmakit::io::RegisterIo;
use spin::Mutex;

use super::bring_up::{Shared, bring_up};
use super::controller::{Controller, Shutdown, status_result};
use super::data_pointer::{DataPointer, DataPointerChoice, ListArea, PrpCheck, build_prps, build_sgl};
use super::identify::ControllerIdentity;
use super::registers::*;
use super::structures::*;

/// The most requests in flight (slots), whatever the controller allows.
pub const MAX_DEPTH: usize = 64;
/// Admin queue entries (one command at a time; a small ring).
pub(super) const ADMIN_ENTRIES: u16 = 8;
/// Linux's `sgl_threshold`: SGLs from 32 KiB up, where they start to pay.
pub const SGL_THRESHOLD: u64 = 32 * 1024;

/// Choices a driver start makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NvmeOptions {
    /// The most bytes one request carries (less if MDTS says so).
    pub max_request_bytes: u64,
    /// SGLs from this many bytes when the controller takes them; `None`: PRPs only.
    pub sgl_threshold: Option<u64>,
}

impl NvmeOptions {
    /// 1 MiB requests, SGLs from 32 KiB.
    pub const DEFAULT: NvmeOptions = NvmeOptions { max_request_bytes: 1 << 20, sgl_threshold: Some(SGL_THRESHOLD) };
}

/// What bring-up learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Identify Controller.
    pub identity: ControllerIdentity,
    /// Namespace 1's blocks.
    pub blocks: u64,
    /// Bytes per block.
    pub block_size: u32,
    /// I/O queue entries.
    pub entries: u16,
    /// Slots.
    pub depth: usize,
    /// The most bytes a request carries.
    pub max_request_bytes: u64,
    /// PRP list (or SGL) pages per slot.
    pub list_pages: usize,
    /// The most segments a request may have: what the slot's list pages
    /// describe on every path the controller is sent requests by, and no
    /// more than the pages a request spans.
    pub max_segments: usize,
    /// PRP or SGL, by size.
    pub choice: DataPointerChoice,
}

struct Channel {
    /// What a running controller holds.
    shared: Option<Shared>,
    /// What a controller that did not confirm its disable was given: never
    /// freed until a later disable is confirmed.
    unstopped: Option<Shared>,
    /// Bytes prepared for each slot's request.
    slots: Vec<Option<u64>>,
}

/// An NVMe namespace behind its controller.
pub struct NvmeDisk<R: RegisterIo> {
    controller: Controller<R>,
    platform: &'static dyn DmaPlatform,
    options: NvmeOptions,
    link: Link,
    channel: Mutex<Channel>,
    interrupts_on: AtomicBool,
    interrupt_masked: AtomicBool,
    /// Commands by the form of their data pointer: PRP1/PRP2 alone, a PRP
    /// list, an SGL.
    pointer_counts: [AtomicU64; 3],
    /// What the last stop's shutdown notification came to; `None` before any.
    last_shutdown: Mutex<Option<Result<Shutdown, IoFailure>>>,
}

/// Why the controller is quiesced: a reset brings it up again at once, a stop
/// may be the last the controller sees before power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Teardown {
    /// Disable only (Linux's reset: a shut-down controller may take longer
    /// to become ready again).
    Reset,
    /// Shut down normally (CC.SHN), then disable.
    Stop,
}

impl<R: RegisterIo> NvmeDisk<R> {
    /// Brings the controller up and namespace 1 with it.
    pub fn new(
        controller: Controller<R>,
        platform: &'static dyn DmaPlatform,
        options: NvmeOptions,
    ) -> Result<NvmeDisk<R>, IoFailure> {
        let (link, shared) = bring_up(&controller, platform, options)?;
        let channel = Channel { shared: Some(shared), unstopped: None, slots: (0..link.depth).map(|_| None).collect() };
        Ok(NvmeDisk {
            controller,
            platform,
            options,
            link,
            channel: Mutex::new(channel),
            interrupts_on: AtomicBool::new(false),
            interrupt_masked: AtomicBool::new(false),
            pointer_counts: [const { AtomicU64::new(0) }; 3],
            last_shutdown: Mutex::new(None),
        })
    }

    /// What bring-up learned.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Unmasks the pin interrupt (vector 0): from now on `acknowledge_interrupt`
    /// masks it in the handler and `collect` unmasks it after releasing the
    /// completions it read.
    pub fn enable_interrupts(&self) {
        self.interrupts_on.store(true, Ordering::Release);
        self.controller.registers.write32(INTMC, 1);
    }

    /// What the last stop's normal shutdown came to: `Ok(Complete)`, skipped
    /// (the controller was not running, or dead), or the typed cause of a
    /// controller that never reported it (`ShutdownIncomplete`, after which
    /// it was disabled all the same). `None` before any stop.
    pub fn last_shutdown(&self) -> Option<Result<Shutdown, IoFailure>> {
        *self.last_shutdown.lock()
    }

    /// Shuts the controller down if `teardown` is a stop, disables it, forgets
    /// every slot, then releases what it was given. A controller that does not
    /// confirm the disable keeps all of it (`unstopped`), and is asked again at
    /// the next stop or start: it is reported running until one is confirmed.
    fn shut_down(&self, teardown: Teardown) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        let held = channel.shared.take().or_else(|| channel.unstopped.take());
        if held.is_none() && !self.controller.may_be_running() {
            return Ok(());
        }
        if teardown == Teardown::Stop {
            // Whatever it says, the disable follows: memory goes back only
            // once CSTS.RDY is 0, never on the strength of SHST alone.
            let shutdown = self.controller.shut_down();
            if let Err(failure) = shutdown {
                log::error!("Nvme: {failure}");
            }
            *self.last_shutdown.lock() = Some(shutdown);
        }
        let stopped = self.controller.disable();
        channel.slots.iter_mut().for_each(|slot| *slot = None);
        match (held, &stopped) {
            (Some(shared), Ok(())) => shared.release(),
            (Some(mut shared), Err(failure)) => {
                log::error!("Nvme: {failure}; its queues and lists are kept, not freed under it");
                shared.io.forget_commands();
                channel.unstopped = Some(shared);
            }
            (None, _) => {}
        }
        stopped
    }

    /// Whether this transfer's segments are checked against the PRP rules:
    /// always, unless a hook (`experiment prp-offset`) switched the check off
    /// for this disk's next transfer.
    fn prp_check(&self) -> PrpCheck {
        match hooks::skip_check(Site::of(self), DriverCheck::PrpRules) {
            true => PrpCheck::Skipped,
            false => PrpCheck::Rules,
        }
    }

    fn list_area<'a>(&self, lists: &'a CoherentMemory, slot: Slot) -> ListArea<'a> {
        let pages = self.link.list_pages;
        ListArea { memory: lists, offset: (slot * pages) as u64 * PAGE_SIZE, pages }
    }
}

impl<R: RegisterIo> Drop for NvmeDisk<R> {
    fn drop(&mut self) {
        if let Err(failure) = self.shut_down(Teardown::Stop) {
            log::error!("Nvme: dropped while the controller would not stop: {failure}");
        }
        if let Some(unstopped) = self.channel.get_mut().unstopped.take() {
            unstopped.abandon();
        }
    }
}

impl<R: RegisterIo> HardwareQueue for NvmeDisk<R> {
    fn shape(&self) -> DiskShape {
        let link = &self.link;
        DiskShape {
            driver_name: "Nvme",
            block_size: link.block_size,
            block_count: link.blocks,
            depth: link.depth,
            max_request_blocks: link.max_request_bytes / u64::from(link.block_size),
            specification: Specification {
                output: RECORD_FORMAT,
                num_address_bits: 64,
                max_segment_size: 0,
                max_transfer_size: link.max_request_bytes,
                // PRP entries are dword aligned; every one but the first
                // starts on a page, and every one but the last ends on one
                // (the virtual boundary): a buffer that cannot be described
                // so is bounced by the DMA layer, never by this driver.
                alignment: 4,
                alignment_length: 4,
                alignment_internal_segments: PAGE_SIZE,
                boundary: 0,
                max_segments: link.max_segments,
                virtual_boundary: PAGE_SIZE,
            },
            platform: self.platform,
            write_cache: link.identity.write_cache(),
            // A completion entry says done, not how many bytes.
            byte_count: ByteCount::Assumed,
        }
    }

    fn description(&self) -> String {
        let link = &self.link;
        let sgl = match link.choice {
            DataPointerChoice::PrpOnly => String::from("PRPs only"),
            DataPointerChoice::SglFrom(threshold) => format!("SGLs from {} KiB", threshold / 1024),
        };
        format!(
            "NVMe {}: {} blocks of {} bytes, 1 I/O queue of {} entries ({} slots), up to {} KiB per request, {sgl}",
            link.identity.model,
            link.blocks,
            link.block_size,
            link.entries,
            link.depth,
            link.max_request_bytes / 1024
        )
    }

    fn program(&self, slot: Slot, command: &BlockCommand, data: &LentTransfer<'_>) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        let Channel { shared, slots, .. } = &mut *channel;
        let (shared, free) = claim_slot(shared, slots, slot)?;
        let area = self.list_area(&shared.lists, slot);
        let (pointer, psdt) = match self.link.choice.uses_sgl(data.length()) {
            true => (build_sgl(data.segments(), data.direction(), &area)?, PSDT_SGL),
            false => (build_prps(data.segments(), data.direction(), self.prp_check(), &area)?, PSDT_PRP),
        };
        // Counted for `stats`.
        let form = match pointer {
            DataPointer::Prp { .. } => PointerForm::PrpAlone,
            DataPointer::PrpList { .. } => PointerForm::PrpList,
            DataPointer::Sgl(_) => PointerForm::Sgl,
        };
        self.pointer_counts[form as usize].fetch_add(1, Ordering::Relaxed);
        let opcode = match command.operation {
            BlockOperation::Read => IO_READ,
            BlockOperation::Write => IO_WRITE,
        };
        let mut entry = SubmissionEntry {
            opcode,
            flags: psdt,
            command_id: slot as u16,
            namespace: 1,
            ..SubmissionEntry::default()
        };
        match pointer {
            DataPointer::Prp { prp1, prp2 } => entry.data = [prp1, prp2],
            DataPointer::PrpList { prp1, list } => entry.data = [prp1, list],
            DataPointer::Sgl(descriptor) => entry.set_sgl(descriptor),
        }
        let blocks = u32::try_from(command.count - 1).ok().filter(|&blocks| blocks <= 0xffff).ok_or(IoFailure::new(
            IoReturn::BadArgument,
            Cause::RequestTooLarge { count: command.count, max: 1 << 16 },
        ))?;
        entry.command[..3].copy_from_slice(&[command.lba as u32, (command.lba >> 32) as u32, blocks]);
        shared.io.submit(&*self.controller.registers, entry)?;
        *free = Some(data.length());
        Ok(())
    }

    /// Flush (NVM command set, opcode 0): the namespace is what is flushed;
    /// no data pointer, no LBA range. Its slot records nothing prepared, so
    /// its completion reports nothing moved.
    fn program_flush(&self, slot: Slot) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        let Channel { shared, slots, .. } = &mut *channel;
        let (shared, free) = claim_slot(shared, slots, slot)?;
        let entry = SubmissionEntry { opcode: IO_FLUSH, command_id: slot as u16, namespace: 1, ..Default::default() };
        shared.io.submit(&*self.controller.registers, entry)?;
        *free = Some(0);
        Ok(())
    }

    fn collect(&self, finished: &mut dyn FnMut(Slot, DeviceOutcome)) -> DeviceHealth {
        let mut outcomes = Vec::new();
        let mut health = DeviceHealth::Running;
        {
            let mut channel = self.channel.lock();
            let Channel { shared: Some(shared), slots, .. } = &mut *channel else { return DeviceHealth::Running };
            loop {
                match shared.io.next_completion() {
                    Ok(Some(completion)) => {
                        let slot = usize::from(completion.command_id);
                        // The queue checked the id is in flight, and ids are slots.
                        let Some(length) = slots.get_mut(slot).and_then(Option::take) else { continue };
                        let result = status_result(shared.io.id(), &completion);
                        let moved = if result.is_ok() { length } else { 0 };
                        outcomes.push((slot, DeviceOutcome { moved, result }));
                    }
                    Ok(None) => break,
                    Err(failure) => {
                        // A completion that lies: the queue can no longer be trusted.
                        log::error!("Nvme: {failure}");
                        health = DeviceHealth::MustStop(failure);
                        break;
                    }
                }
            }
            shared.io.release_completions(&*self.controller.registers);
            // A controller that lied stays stopped; one that died (CFS) is
            // reset, and what it held issued again. A dead controller posts
            // nothing, so CSTS is read only when nothing came: one register
            // read less per completion (each costs the emulator a trip).
            let fatal = outcomes.is_empty() && self.controller.registers.read32(CSTS) & CSTS_FATAL != 0;
            if fatal && health == DeviceHealth::Running {
                health =
                    DeviceHealth::MustReset(IoFailure::new(IoReturn::IoError, Cause::Nvme(NvmeCause::ControllerFatal)));
            }
        }
        if self.interrupt_masked.swap(false, Ordering::AcqRel) {
            self.controller.registers.write32(INTMC, 1);
        }
        for (slot, outcome) in outcomes {
            finished(slot, outcome);
        }
        health
    }

    /// Masks vector 0 (INTMS) so the line drops until `collect` has read and
    /// released the completions, then unmasks it. Registers only: no lock.
    fn acknowledge_interrupt(&self) -> bool {
        if !self.interrupts_on.load(Ordering::Acquire) {
            return false;
        }
        self.controller.registers.write32(INTMS, 1);
        !self.interrupt_masked.swap(true, Ordering::AcqRel)
    }

    fn quiesce(&self) -> Quiesced {
        match self.shut_down(Teardown::Reset) {
            Ok(()) => Quiesced::Stopped,
            Err(failure) => Quiesced::StillRunning(failure),
        }
    }

    /// A stop tells the controller first (CC.SHN), so its cache reaches the
    /// medium; the disable and the release follow as for `quiesce`.
    fn quiesce_to_stop(&self) -> Quiesced {
        match self.shut_down(Teardown::Stop) {
            Ok(()) => Quiesced::Stopped,
            Err(failure) => Quiesced::StillRunning(failure),
        }
    }

    fn reopen(&self) -> Result<(), IoFailure> {
        let mut channel = self.channel.lock();
        if channel.shared.is_some() {
            return Err(IoFailure::new(IoReturn::Busy, Cause::Nvme(NvmeCause::NotStopped)));
        }
        // A controller that did not stop at the last quiesce is asked again
        // before its old memory goes back and new memory is given.
        if let Some(unstopped) = channel.unstopped.take() {
            match self.controller.disable() {
                Ok(()) => unstopped.release(),
                Err(failure) => {
                    channel.unstopped = Some(unstopped);
                    return Err(failure);
                }
            }
        }
        let (link, shared) = bring_up(&self.controller, self.platform, self.options)?;
        if link != self.link {
            match self.controller.disable() {
                Ok(()) => shared.release(),
                Err(failure) => {
                    log::error!("Nvme: {failure}");
                    channel.unstopped = Some(shared);
                }
            }
            return Err(IoFailure::new(IoReturn::IoError, Cause::Nvme(NvmeCause::ControllerChanged)));
        }
        channel.shared = Some(shared);
        if self.interrupts_on.load(Ordering::Acquire) {
            self.controller.registers.write32(INTMC, 1);
        }
        Ok(())
    }

    /// `quiesce` disables the controller (CC.EN = 0, CSTS.RDY = 0 awaited),
    /// which forgets every queue and command; `reopen` brings it up afresh.
    fn recovery(&self) -> Recovery {
        Recovery::ResetAndReissue
    }

    fn last_status(&self) -> Option<DeviceStatus> {
        Some(self.controller.status())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let count = |form: PointerForm| self.pointer_counts[form as usize].load(Ordering::Relaxed);
        alloc::vec![
            ("PRP1/PRP2 alone", count(PointerForm::PrpAlone)),
            ("PRP list", count(PointerForm::PrpList)),
            ("SGL", count(PointerForm::Sgl)),
        ]
    }
}

/// How a command's data is described, for the counters.
#[derive(Clone, Copy)]
enum PointerForm {
    /// One or two pages: PRP1 and PRP2 hold them.
    PrpAlone = 0,
    /// PRP2 points to a list page (or a chain of them).
    PrpList = 1,
    /// An SGL descriptor (or a segment of them).
    Sgl = 2,
}
