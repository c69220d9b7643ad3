//! The fake channel's lying mode: a script of [`Lie`]s, one taken at each
//! command written to the drive, for host tests (and the property test in
//! `tests/hostile_tests.rs`) that hold the driver to believing nothing it
//! cannot check. Registers that lie are lied about where the driver reads
//! them (`ports.rs`), so the fake's own state stays that of an honest drive
//! and every byte it moves still goes only through the PRD table it was
//! given; in lying mode it also records every range it wrote, for the test to
//! hold against the segments the block layer lent.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, DmaPlatform};

use proptest::prelude::*;

use super::super::identify::{Addressing, identify_words};
use super::super::registers::*;
use super::{FakeChannel, State};

/// One lie, told about the command it is taken for (until the next command
/// or a software reset, unless it says for ever).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// The command runs as an honest drive's would.
    Honest,
    /// Once the command is written, the drive's status reads as `status` and
    /// its error register as `error`, whatever happened.
    EndStatus {
        /// What the status (and alternate status) registers show.
        status: u8,
        /// What the error register shows.
        error: u8,
    },
    /// Once the command is written, the engine's status reads as this.
    EngineStatus(u8),
    /// The engine, once started, holds the DMA back: Active, no interrupt,
    /// nothing moved (the fake's `late` mode, for this command).
    ActiveForever,
    /// From this command on, the drive's status reads as this, through every
    /// software reset (BSY or DRQ that never clears).
    StatusForever(u8),
    /// The drive moves this many sectors and says all is well (`short_sectors`).
    ShortSectors(u64),
    /// The command's sector this far in fails (`bad_sector`).
    BadSector(u64),
    /// The engine reports an error (`bus_error`).
    BusError,
    /// The drive reports a device fault (`device_fault`).
    DeviceFault,
    /// The engine's interrupt bit rises at the command write, before the
    /// engine is started: a completion before the command began.
    InterruptBeforeStart,
}

/// What the lying mode keeps.
#[derive(Default)]
pub struct Hostility {
    /// Whether lies are told and writes recorded.
    enabled: bool,
    /// Lies still to tell, the next last.
    script: Vec<Lie>,
    /// The lie told about the command now running.
    current: Option<Lie>,
    /// A status the drive shows for ever.
    forever: Option<u8>,
    /// Every range of memory the fake wrote: (address, bytes).
    pub writes: Vec<(u64, u64)>,
}

impl Hostility {
    /// The status (or alternate status) the driver reads, for `real`.
    pub(super) fn status(&self, real: u8) -> u8 {
        match (self.forever, self.current) {
            (Some(status), _) => status,
            (None, Some(Lie::EndStatus { status, .. })) => status,
            _ => real,
        }
    }

    /// The error register the driver reads, for `real`.
    pub(super) fn error(&self, real: u8) -> u8 {
        match self.current {
            Some(Lie::EndStatus { error, .. }) => error,
            _ => real,
        }
    }

    /// The engine's status the driver reads, for `real`.
    pub(super) fn engine_status(&self, real: u8) -> u8 {
        match self.current {
            Some(Lie::EngineStatus(status)) => status,
            _ => real,
        }
    }

    /// Whether the engine holds this command's DMA back.
    pub(super) fn holds_back(&self) -> bool {
        self.current == Some(Lie::ActiveForever)
    }

    /// Records a write of `bytes` at `address`, in lying mode.
    pub(super) fn wrote(&mut self, address: u64, bytes: u64) {
        if self.enabled {
            self.writes.push((address, bytes));
        }
    }

    /// A software reset ends the command, and with it what was said about it.
    pub(super) fn reset(&mut self) {
        self.current = None;
    }
}

impl FakeChannel {
    /// Switches the lying mode on: `lies`, told in order, one per command
    /// written (then honest again), and forgets what was recorded.
    pub fn lie_with(&self, lies: &[Lie]) {
        let mut hostility = self.hostility.lock();
        *hostility = Hostility { enabled: true, script: lies.iter().rev().copied().collect(), ..Hostility::default() };
    }

    /// Takes the ranges written since the last call.
    pub fn take_writes(&self) -> Vec<(u64, u64)> {
        core::mem::take(&mut self.hostility.lock().writes)
    }

    /// A command was written: the next lie of the script is told about it,
    /// switching the honest fake's knobs for this command.
    pub(super) fn next_lie(&self, state: &mut State) {
        let mut hostility = self.hostility.lock();
        if !hostility.enabled {
            return;
        }
        let lie = hostility.script.pop().unwrap_or(Lie::Honest);
        hostility.current = Some(lie);
        if let Lie::StatusForever(status) = lie {
            hostility.forever = Some(status);
        }
        if lie == Lie::InterruptBeforeStart {
            state.bm_status |= BM_INTERRUPT;
        }
        let (short, bad) = match lie {
            Lie::ShortSectors(sectors) => (Some(sectors), None),
            Lie::BadSector(offset) => (None, Some(offset)),
            _ => (None, None),
        };
        let lba = (0..3).fold(0u64, |lba, i| lba | u64::from(state.lba[i][0]) << (8 * i));
        *self.short_sectors.lock() = short;
        *self.bad_sector.lock() = bad.map(|offset| lba + offset);
        self.bus_error.store(lie == Lie::BusError, Ordering::Relaxed);
        self.device_fault.store(lie == Lie::DeviceFault, Ordering::Relaxed);
    }
}

/// Word 255 bits 7:0 when bits 15:8 are IDENTIFY's checksum.
const CHECKSUM_SIGNATURE: u16 = 0xa5;

/// Free frames (of the simulated machine's 28,416) below which a case's
/// machine is replaced: what abandoned transfers and ports leak stays leaked,
/// and a hundred thousand cases must not run the machine dry (or its 12,032
/// frames below 4 GiB, or its bounce budget), which would change what they
/// test. A case uses a few dozen frames.
const FRESH_MACHINE_BELOW_FRAMES: usize = 20_000;

/// A simulated machine for one generated case of a hostile-device property
/// test (ATA or AHCI): the thread's last one while it has memory to spare, so
/// that a case costs no new machine (each is leaked, for `'static`, and
/// holds every page ever written); a fresh one when leaked memory or bounce
/// pages left it short.
pub fn case_machine() -> &'static SimulatedPlatform {
    std::thread_local! {
        static MACHINE: core::cell::Cell<Option<&'static SimulatedPlatform>> = const { core::cell::Cell::new(None) };
    }
    MACHINE.with(|machine| {
        let short = |platform: &SimulatedPlatform| {
            let stats = platform.accounting().stats();
            platform.free_frames_count() < FRESH_MACHINE_BELOW_FRAMES || stats.pages_in_use > stats.page_limit / 2
        };
        let platform =
            machine.get().filter(|platform| !short(platform)).unwrap_or_else(|| SimulatedPlatform::leak(256));
        machine.set(Some(platform));
        platform
    })
}

/// IDENTIFY answers at and past every edge the drivers read, for a drive of
/// `sectors`: the sector counts (words 60-61, 100-103) and the 48-bit set
/// (word 83), NCQ and its depth (words 75-76), the logical sector size (words
/// 106, 117-118), the checksum (word 255: none, wrong, or right); mostly
/// `None`, the drive's own answer, so that the cases go on to lie about
/// commands.
pub fn identify_answers(sectors: u64) -> impl Strategy<Value = Option<[u16; 256]>> {
    let lba28 = prop::sample::select(vec![0u32, 1, 8, sectors as u32, 0x0fff_ffff, 0x1000_0000, u32::MAX]);
    let lba48 = prop::sample::select(vec![0u64, 1, sectors, (1 << 48) - 1, 1 << 48, u64::MAX]);
    let addressing = prop_oneof![Just(Addressing::Lba28), Just(Addressing::Lba48)];
    let queuing =
        prop::sample::select(vec![(0u16, 0u16), (0, 1 << 8), (31, 1 << 8), (0xffff, 0xffff), (0xffe0, 0xfeff)]);
    let word_106 = prop::sample::select(vec![0u16, 0x4000, 0x5000, 0x1000, 0xffff]);
    let sector_words = prop::sample::select(vec![0u32, 1, 255, 256, 257, u32::MAX]);
    // `None`: the checksum that makes the words sum to 0.
    let word_255 = prop::sample::select(vec![Some(0u16), Some(0x00a5), Some(0x12a5), Some(0xffff), None]);
    let words = (addressing, lba28, lba48, queuing, word_106, sector_words, word_255).prop_map(
        |(addressing, lba28, lba48, (word_75, word_76), word_106, sector_words, word_255)| {
            let mut words = identify_words(addressing, lba28, lba48);
            (words[75], words[76], words[106]) = (word_75, word_76, word_106);
            (words[117], words[118]) = (sector_words as u16, (sector_words >> 16) as u16);
            words[255] = word_255.unwrap_or(CHECKSUM_SIGNATURE);
            if word_255.is_none() {
                let sum =
                    words.iter().flat_map(|word| word.to_le_bytes()).fold(0u8, |sum, byte| sum.wrapping_add(byte));
                words[255] |= u16::from(sum.wrapping_neg()) << 8;
            }
            words
        },
    );
    prop::option::weighted(0.1, words)
}

/// The configuration of a hostile-device property test:
/// [`hostile_cases`](crate::test_support::hostile_cases) cases, and no
/// failure files written into the source tree.
pub fn hostile_config() -> ProptestConfig {
    ProptestConfig {
        cases: crate::test_support::hostile_cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Whether a failure's `cause` says why: one with no cause, words only, or a
/// request the block layer lost does not.
pub fn says_why(cause: Cause) -> bool {
    !matches!(cause, Cause::Unspecified | Cause::Other(_) | Cause::RequestLost)
}
