//! A fake NVMe controller for host tests, with one namespace of 512-byte
//! blocks. Like a real one it reads its queues and the commands' PRPs and SGLs
//! from (simulated) physical memory and moves data only through what they
//! describe (walked as QEMU walks them, `walk.rs`), refusing what QEMU refuses
//! with QEMU's statuses; it asserts that every byte it reads or writes lies in
//! allocated memory, so a driver that frees memory the controller may still
//! use fails its test.
//!
//! CC.EN 0 -> 1 makes it ready (CSTS.RDY) with the admin queue AQA/ASQ/ACQ
//! name; 1 -> 0 resets it: it forgets every queue and command, CSTS.SHST
//! included (unless it is `stuck`, when CSTS.RDY stays 1 and it keeps
//! everything). CC.SHN 00b -> 01b on a running controller is a shutdown, which
//! QEMU completes within the register write: CSTS.SHST = 10b, and no command
//! runs until a reset; with [`FakeShutdown::NeverReports`] SHST stays 01b
//! (processing). SHN back to 00b clears SHST, as in QEMU. A fatal error
//! ([`FakeNvme::raise_fatal`], or `fatal_on_io` at the next I/O doorbell) sets
//! CSTS.CFS: it runs no more commands until a reset. Commands run
//! inside the doorbell write that submits them, or, with `hold`, I/O commands
//! wait for [`FakeNvme::complete`]. The next completion can be made to lie
//! ([`Lie`]). INTx follows INTMS/INTMC and QEMU's own bookkeeping (7.2,
//! `hw/nvme/ctrl.c`): a count of completion queues with unreleased entries goes
//! up when an empty queue gets one and down at *every* head doorbell that
//! leaves a queue empty, even one that moved nothing; vector 0 is asserted from
//! the first completion until a head doorbell finds the count at zero. A driver
//! that rings the head doorbell without having consumed anything drives the
//! count below zero, and the line then never drops: an interrupt storm.

mod admin;
mod hostile;
pub mod walk;

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{GenericStatus, MediaStatus, NvmeStatus};
use dmakit::io::RegisterIo;
use dmakit::memory::FRAME_SIZE;
use spin::Mutex;

use super::identify::{ControllerIdentity, NamespaceIdentity};
use super::registers::*;
use super::structures::*;
pub use admin::{AdminStep, Failing};
use hostile::PhaseTag;
pub use hostile::{Answer, Forged, Hostile};
use walk::Run;

/// Bytes per block of the namespace.
pub const BLOCK: u64 = 512;
/// Bytes of registers (BAR 0) the fake has: QEMU's 16 KiB.
pub const FAKE_REGISTER_BYTES: u64 = 0x4000;

/// How the next completion lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// It names a command id nothing was submitted with.
    UnknownCommand(u16),
    /// It names another submission queue.
    WrongQueue(u16),
    /// Its submission head is beyond the tail.
    HeadPastTail,
    /// Its submission head is this value, whatever the queue holds.
    Head(u16),
}

/// How the controller answers a shutdown notification (CC.SHN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeShutdown {
    /// CSTS.SHST = 10b at once, as QEMU does.
    Completes,
    /// CSTS.SHST stays 01b (processing): it never reports completion.
    NeverReports,
}

/// A command the controller ended: (queue, opcode, PSDT, the status if it failed).
pub type Logged = (u16, u8, u8, Option<NvmeStatus>);

#[derive(Clone, Copy)]
struct Submission {
    address: u64,
    entries: u16,
    head: u16,
    tail: u16,
}

#[derive(Clone, Copy)]
struct Completion {
    address: u64,
    entries: u16,
    tail: u16,
    head: u16,
    phase: bool,
}

#[derive(Default)]
struct State {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    intms: u32,
    /// Vector 0's status: set by a completion, cleared by a head doorbell
    /// that leaves every queue empty (QEMU's `irq_status`).
    vector_status: bool,
    /// Queues with unreleased completions, as QEMU counts them (its
    /// `cq_pending`, which a needless head doorbell drives below zero).
    queues_pending: i32,
    submissions: [Option<Submission>; 2],
    completions: [Option<Completion>; 2],
    /// I/O commands held for `complete`, with the submission head after them.
    held: Vec<(SubmissionEntry, u16)>,
}

/// The fake controller.
pub struct FakeNvme {
    platform: &'static SimulatedPlatform,
    state: Mutex<State>,
    /// CAP.
    pub cap: u64,
    /// What Identify Controller answers.
    pub controller: Mutex<ControllerIdentity>,
    /// The namespace's blocks.
    pub image: Mutex<Vec<u8>>,
    /// A block whose commands fail with Unrecovered Read Error.
    pub bad_lba: Mutex<Option<u64>>,
    /// I/O commands wait for [`FakeNvme::complete`].
    pub hold: AtomicBool,
    /// The controller never stops: CSTS.RDY stays 1 after CC.EN is cleared.
    pub stuck: AtomicBool,
    /// The next I/O doorbell kills it (CSTS.CFS), the command never run: at
    /// every doorbell, until cleared, so it dies again after every reset.
    pub fatal_on_io: AtomicBool,
    /// How the next I/O completion lies.
    pub lie: Mutex<Option<Lie>>,
    /// Every command the controller ended.
    pub log: Mutex<Vec<Logged>>,
    /// Every Flush it ran, as submitted (namespace, data pointer and all).
    pub flushes: Mutex<Vec<SubmissionEntry>>,
    /// The status Flush commands end with (`None`: success).
    pub flush_status: Mutex<Option<NvmeStatus>>,
    /// Whether every queue page was still allocated when CC.EN was cleared.
    pub disables: Mutex<Vec<bool>>,
    /// How it answers CC.SHN.
    pub shutdown: Mutex<FakeShutdown>,
    /// CSTS.SHST each time CC.EN was cleared on a running controller.
    pub shutdown_at_disable: Mutex<Vec<ShutdownStatus>>,
    /// The bring-up step whose admin command fails, and how.
    pub fail_admin: Mutex<Option<(AdminStep, Failing)>>,
    /// CC.EN 0 -> 1 never sets CSTS.RDY.
    pub never_ready: AtomicBool,
    /// The most I/O commands held at once.
    pub most_held: Mutex<usize>,
    /// What Identify Namespace answers instead of the image's size in
    /// 512-byte blocks.
    pub namespace: Mutex<Option<NamespaceIdentity>>,
    /// The hostile mode's watch over the data it moves (`hostile.rs`).
    pub hostile: Mutex<Option<Hostile>>,
}

/// The controller's registers (BAR 0), as the driver sees them.
pub struct FakeRegisters(pub Arc<FakeNvme>);

impl FakeNvme {
    /// A controller with `blocks` blocks filled by `fill`, MQES `max_entries`
    /// - 1, and SGLs as `sgl` says; its doorbells are packed (DSTRD 0).
    pub fn new(platform: &'static SimulatedPlatform, image: Vec<u8>, max_entries: u16, sgl: bool) -> Arc<FakeNvme> {
        FakeNvme::with_stride(platform, image, max_entries, sgl, 0)
    }

    /// The same with doorbells `4 << stride` bytes apart (CAP.DSTRD): a
    /// doorbell written anywhere else is refused.
    pub fn with_stride(
        platform: &'static SimulatedPlatform,
        image: Vec<u8>,
        max_entries: u16,
        sgl: bool,
        stride: u8,
    ) -> Arc<FakeNvme> {
        // MQES, CQR, TO 1 (500 ms), DSTRD, NVM command set, MPSMIN 0.
        let cap = u64::from(max_entries - 1) | 1 << 16 | 1 << 24 | u64::from(stride & 0xf) << 32 | 1 << 37;
        let controller = ControllerIdentity {
            serial: "fake-0001".into(),
            model: "FAKE NVME".into(),
            max_transfer_shift: 0,
            submission_entry_sizes: 0x66,
            completion_entry_sizes: 0x44,
            namespaces: 1,
            // QEMU's controller says it has one.
            volatile_write_cache: 1,
            sgl_support: u32::from(sgl),
        };
        Arc::new(FakeNvme {
            platform,
            state: Mutex::new(State::default()),
            cap,
            controller: Mutex::new(controller),
            image: Mutex::new(image),
            bad_lba: Mutex::new(None),
            hold: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            fatal_on_io: AtomicBool::new(false),
            lie: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            flushes: Mutex::new(Vec::new()),
            flush_status: Mutex::new(None),
            disables: Mutex::new(Vec::new()),
            shutdown: Mutex::new(FakeShutdown::Completes),
            shutdown_at_disable: Mutex::new(Vec::new()),
            fail_admin: Mutex::new(None),
            never_ready: AtomicBool::new(false),
            most_held: Mutex::new(0),
            namespace: Mutex::new(None),
            hostile: Mutex::new(None),
        })
    }

    fn allocated(&self, address: u64, length: u64) -> bool {
        length == 0
            || (address / FRAME_SIZE..(address + length).div_ceil(FRAME_SIZE))
                .all(|page| self.platform.is_allocated(page * FRAME_SIZE))
    }

    /// Reads memory the controller was pointed at: it must be allocated.
    fn read(&self, address: u64, bytes: &mut [u8]) {
        assert!(self.allocated(address, bytes.len() as u64), "the controller read freed memory at {address:#x}");
        self.platform.device_read(address, bytes);
    }

    /// Writes memory the controller was pointed at: it must be allocated.
    fn write(&self, address: u64, bytes: &[u8]) {
        assert!(self.allocated(address, bytes.len() as u64), "the controller wrote freed memory at {address:#x}");
        self.platform.device_write(address, bytes);
    }

    /// Whether the INTx line is asserted.
    pub fn interrupt_pending(&self) -> bool {
        let state = self.state.lock();
        state.intms & 1 == 0 && state.vector_status
    }

    /// A fatal error: CSTS.CFS is set and no command runs until CC.EN is
    /// cleared (which forgets every queue and command, as a reset does).
    pub fn raise_fatal(&self) {
        self.state.lock().csts |= CSTS_FATAL;
    }

    /// A controller that would not stop (`stuck`) stops now: a disable it was
    /// asked for (CC.EN already 0) completes, and a later one works at once.
    pub fn unstick(&self) {
        self.stuck.store(false, Ordering::Relaxed);
        let mut state = self.state.lock();
        if state.cc & CC_ENABLE == 0 {
            let intms = state.intms;
            *state = State { intms, ..State::default() };
        }
    }

    /// I/O commands held, by command id.
    pub fn held_commands(&self) -> Vec<u16> {
        self.state.lock().held.iter().map(|(entry, _)| entry.command_id).collect()
    }

    /// Completes the held command with id `command_id`.
    pub fn complete(&self, command_id: u16) {
        let mut state = self.state.lock();
        if let Some(position) = state.held.iter().position(|(entry, _)| entry.command_id == command_id) {
            let (entry, _) = state.held.remove(position);
            let status = self.execute_io(&entry);
            // SQHD is where the controller's head is now, not where it was
            // when it fetched this command: it never goes back.
            let head = state.submissions[1].map_or(0, |ring| ring.head);
            self.post(&mut state, 1, &entry, head, status);
        }
    }

    /// The data runs a command's data pointer describes for `length` bytes.
    fn map(&self, entry: &SubmissionEntry, length: u64) -> Result<Vec<Run>, NvmeStatus> {
        let read = |address: u64, bytes: &mut [u8]| self.read(address, bytes);
        match entry.flags & PSDT_MASK {
            PSDT_PRP => walk::map_prp(&read, entry.data[0], entry.data[1], length),
            PSDT_SGL if self.controller.lock().supports_sgl() => walk::map_sgl(&read, entry.sgl(), length),
            _ => Err(NvmeStatus::Generic(GenericStatus::InvalidField)),
        }
    }

    /// Writes `bytes` to memory through the command's data pointer.
    fn to_host(&self, entry: &SubmissionEntry, bytes: &[u8]) -> Result<(), NvmeStatus> {
        let mut at = 0;
        for (address, length) in self.map(entry, bytes.len() as u64)? {
            self.write(address, &bytes[at..at + length as usize]);
            at += length as usize;
        }
        Ok(())
    }

    fn execute_io(&self, entry: &SubmissionEntry) -> Result<(), NvmeStatus> {
        if entry.namespace != 1 {
            return Err(NvmeStatus::Generic(GenericStatus::InvalidNamespace));
        }
        let lba = u64::from(entry.command[0]) | u64::from(entry.command[1]) << 32;
        let blocks = u64::from(entry.command[2] & 0xffff) + 1;
        match entry.opcode {
            // Flush moves no data: its data pointer is not walked (NVMe 2.0,
            // NVM command set 3.2.2); the test looks at what it was given.
            IO_FLUSH => {
                self.flushes.lock().push(*entry);
                return self.flush_status.lock().map_or(Ok(()), Err);
            }
            IO_READ | IO_WRITE => {}
            _ => return Err(NvmeStatus::Generic(GenericStatus::InvalidOpcode)),
        }
        let image_blocks = self.image.lock().len() as u64 / BLOCK;
        if lba + blocks > image_blocks {
            return Err(NvmeStatus::Generic(GenericStatus::LbaOutOfRange));
        }
        // The data pointer is mapped (and refused) before the medium is touched.
        let start = (lba * BLOCK) as usize;
        let length = (blocks * BLOCK) as usize;
        let bad = self.bad_lba.lock().is_some_and(|bad| (lba..lba + blocks).contains(&bad));
        let runs = self.map(entry, length as u64)?;
        self.watch_runs(entry, &runs);
        if entry.opcode == IO_READ {
            if bad {
                return Err(NvmeStatus::Media(MediaStatus::UnrecoveredReadError));
            }
            let bytes = self.image.lock()[start..start + length].to_vec();
            let mut at = 0;
            for (address, length) in runs {
                self.write(address, &bytes[at..at + length as usize]);
                at += length as usize;
            }
            Ok(())
        } else {
            let mut bytes = vec![0u8; length];
            let mut at = 0;
            for (address, length) in runs {
                self.read(address, &mut bytes[at..at + length as usize]);
                at += length as usize;
            }
            if bad {
                return Err(NvmeStatus::Media(MediaStatus::WriteFault));
            }
            self.image.lock()[start..start + length].copy_from_slice(&bytes);
            Ok(())
        }
    }

    /// Writes the completion for `entry` into queue `queue`'s completion ring.
    fn post(&self, state: &mut State, queue: u16, entry: &SubmissionEntry, head: u16, result: Result<(), NvmeStatus>) {
        let status = result.err();
        self.log.lock().push((queue, entry.opcode, entry.flags & PSDT_MASK, status));
        let mut completion = CompletionEntry {
            result: 0,
            reserved: 0,
            submission_head: head,
            submission_queue: queue,
            command_id: entry.command_id,
            status: status.map_or(0, |status| status.encode(true)),
        };
        if queue != 0 {
            match self.lie.lock().take() {
                Some(Lie::UnknownCommand(id)) => completion.command_id = id,
                Some(Lie::WrongQueue(other)) => completion.submission_queue = other,
                Some(Lie::HeadPastTail) => {
                    let tail = state.submissions[1].map_or(0, |sq| sq.tail);
                    completion.submission_head = tail + 1;
                }
                Some(Lie::Head(head)) => completion.submission_head = head,
                None => {}
            }
        }
        self.push(state, queue, completion, PhaseTag::Current);
    }

    /// Writes `completion` at queue `queue`'s completion tail with the phase
    /// tag `phase` says. A full ring is the driver's fault, unless the
    /// controller is hostile: its made-up completions may fill it, and then
    /// what it posts next is lost.
    fn push(&self, state: &mut State, queue: u16, mut completion: CompletionEntry, phase: PhaseTag) {
        let hostile = self.hostile.lock().is_some();
        let Some(ring) = state.completions[usize::from(queue)].as_mut() else { return };
        let full = (ring.tail + 1) % ring.entries == ring.head;
        if full && hostile {
            return;
        }
        assert!(!full, "the driver let completion queue {queue} fill up");
        if ring.tail == ring.head {
            state.queues_pending += 1;
        }
        state.vector_status = true;
        let tag = match phase {
            PhaseTag::Current => ring.phase,
            PhaseTag::Previous => !ring.phase,
        };
        completion.status = completion.status & !1 | u16::from(tag);
        self.write(ring.address + 16 * u64::from(ring.tail), &completion.to_bytes());
        ring.tail += 1;
        if ring.tail == ring.entries {
            ring.tail = 0;
            ring.phase = !ring.phase;
        }
    }

    /// Runs what queue `queue`'s submission ring holds between head and tail.
    fn run(&self, state: &mut State, queue: u16) {
        if queue != 0 && self.fatal_on_io.load(Ordering::Relaxed) {
            state.csts |= CSTS_FATAL;
        }
        // Nor after a shutdown (SHST not 00b): only a reset makes it take
        // commands again.
        let shut_down = ShutdownStatus::of(state.csts) != ShutdownStatus::Normal;
        if state.cc & CC_ENABLE == 0 || state.csts & CSTS_READY == 0 || state.csts & CSTS_FATAL != 0 || shut_down {
            return;
        }
        while let Some(ring) = state.submissions[usize::from(queue)].filter(|ring| ring.head != ring.tail) {
            let mut bytes = [0u8; 64];
            self.read(ring.address + 64 * u64::from(ring.head), &mut bytes);
            let entry = SubmissionEntry::from_bytes(&bytes);
            let head = (ring.head + 1) % ring.entries;
            if let Some(ring) = state.submissions[usize::from(queue)].as_mut() {
                ring.head = head;
            }
            if queue == 0 {
                // A command that never completes: nothing is posted.
                if let Some(result) = self.execute_admin(state, &entry) {
                    self.post(state, 0, &entry, head, result);
                }
            } else if self.hold.load(Ordering::Relaxed) {
                state.held.push((entry, head));
                let mut most = self.most_held.lock();
                *most = (*most).max(state.held.len());
                drop(most);
                self.forge_at_doorbell(state);
            } else {
                let result = self.execute_io(&entry);
                self.post(state, 1, &entry, head, result);
            }
        }
    }

    fn set_configuration(&self, state: &mut State, value: u32) {
        let was = state.cc & CC_ENABLE;
        let shutdown_was = state.cc & CC_SHUTDOWN_MASK;
        state.cc = value;
        match (was, value & CC_ENABLE) {
            (0, 1) => {
                let submission_entries = (state.aqa & 0xfff) as u16 + 1;
                let completion_entries = ((state.aqa >> 16) & 0xfff) as u16 + 1;
                assert!(
                    state.asq.is_multiple_of(PAGE_SIZE) && state.acq.is_multiple_of(PAGE_SIZE),
                    "admin queues page aligned"
                );
                state.submissions[0] =
                    Some(Submission { address: state.asq, entries: submission_entries, head: 0, tail: 0 });
                state.completions[0] =
                    Some(Completion { address: state.acq, entries: completion_entries, tail: 0, head: 0, phase: true });
                if !self.never_ready.load(Ordering::Relaxed) {
                    state.csts = self.status_at_enable();
                }
            }
            (1, 0) => {
                let queues = state.submissions.iter().flatten().map(|ring| (ring.address, 64 * ring.entries));
                let completions = state.completions.iter().flatten().map(|ring| (ring.address, 16 * ring.entries));
                let allocated = queues.chain(completions).all(|(address, bytes)| self.allocated(address, bytes.into()));
                self.disables.lock().push(allocated);
                self.shutdown_at_disable.lock().push(ShutdownStatus::of(state.csts));
                if !self.stuck.load(Ordering::Relaxed) {
                    let intms = state.intms;
                    *state = State { intms, ..State::default() };
                }
            }
            (1, 1) => self.notify_shutdown(state, shutdown_was, value & CC_SHUTDOWN_MASK),
            _ => {}
        }
    }

    /// CC.SHN written on an enabled controller: 00b -> not 00b starts a
    /// shutdown (finished at once unless it `NeverReports`), back to 00b
    /// clears CSTS.SHST.
    fn notify_shutdown(&self, state: &mut State, was: u32, now: u32) {
        let status = match (was, now) {
            (0, 0) => return,
            (0, _) if state.csts & CSTS_READY == 0 => return,
            (0, _) => match *self.shutdown.lock() {
                FakeShutdown::Completes => ShutdownStatus::Complete,
                FakeShutdown::NeverReports => ShutdownStatus::Processing,
            },
            (_, 0) => ShutdownStatus::Normal,
            _ => return,
        };
        let mask = 0b11 << CSTS_SHUTDOWN_SHIFT;
        state.csts = state.csts & !mask | u32::from(status.bits()) << CSTS_SHUTDOWN_SHIFT;
    }

    fn doorbell(&self, state: &mut State, offset: u16, value: u32) {
        // Doorbell y of the queues is at 0x1000 + y * (4 << CAP.DSTRD); any
        // other offset in the range is no doorbell (a driver that ignores
        // the stride rings the wrong queue, or none).
        let stride = 4u16 << Capabilities::decode(self.cap).doorbell_stride;
        let within = offset - DOORBELLS;
        assert!(
            within.is_multiple_of(stride),
            "doorbell write at {offset:#x}, not on the {stride}-byte grid CAP.DSTRD sets"
        );
        assert!(u64::from(offset) + 4 <= FAKE_REGISTER_BYTES, "doorbell write at {offset:#x}, past the registers");
        let index = within / stride;
        let queue = usize::from(index / 2);
        let value = value as u16;
        if index.is_multiple_of(2) {
            if let Some(ring) = state.submissions.get_mut(queue).and_then(Option::as_mut) {
                assert!(value < ring.entries, "submission tail {value} past the ring");
                ring.tail = value;
            }
            self.run(state, queue as u16);
        } else if let Some(ring) = state.completions.get_mut(queue).and_then(Option::as_mut) {
            assert!(value < ring.entries, "completion head {value} past the ring");
            ring.head = value;
            if ring.tail == ring.head {
                state.queues_pending -= 1;
                if state.queues_pending == 0 {
                    state.vector_status = false;
                }
            }
        }
    }
}

impl RegisterIo for FakeRegisters {
    fn read8(&self, offset: u16) -> u8 {
        self.read32(offset & !3) as u8
    }
    fn read16(&self, offset: u16) -> u16 {
        self.read32(offset & !3) as u16
    }
    fn read32(&self, offset: u16) -> u32 {
        let state = self.0.state.lock();
        match offset {
            CAP => self.0.cap as u32,
            0x04 => (self.0.cap >> 32) as u32,
            VS => 0x0001_0400,
            INTMS | INTMC => state.intms,
            CC => state.cc,
            CSTS => state.csts,
            AQA => state.aqa,
            _ => 0,
        }
    }
    fn write8(&self, offset: u16, value: u8) {
        self.write32(offset, value.into())
    }
    fn write16(&self, offset: u16, value: u16) {
        self.write32(offset, value.into())
    }
    fn write32(&self, offset: u16, value: u32) {
        let fake = &self.0;
        let mut state = fake.state.lock();
        match offset {
            INTMS => state.intms |= value,
            INTMC => state.intms &= !value,
            CC => fake.set_configuration(&mut state, value),
            AQA => state.aqa = value,
            ASQ => state.asq = state.asq & !0xffff_ffff | u64::from(value),
            0x2c => state.asq = state.asq & 0xffff_ffff | u64::from(value) << 32,
            ACQ => state.acq = state.acq & !0xffff_ffff | u64::from(value),
            0x34 => state.acq = state.acq & 0xffff_ffff | u64::from(value) << 32,
            DOORBELLS.. => fake.doorbell(&mut state, offset, value),
            _ => {}
        }
    }
}
