//! What the hostile-device property tests of virtio-blk
//! (`tests/hostile_block_tests.rs`) and virtio-net (`hostile_net_tests.rs`)
//! share: the lies a device tells about a used element (its id, its length),
//! the edges of the configuration a device may offer, the simulated machine
//! the cases take turns on, and the runner that makes 100,000 of them.

use core::cell::Cell;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, DmaPlatform, IoFailure, Misuse};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::fake::{ConfigGeneration, FakeDevice, FeatureCheck, Personality, ResetResponse};
use super::registers::{STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_FAILED};
use super::transport::Interface;
use crate::test_support::hostile_cases;

/// Which id a made-up used element names.
#[derive(Clone, Copy, Debug)]
pub enum IdLie {
    /// The chain's own head (a copy, when the chain's element was given).
    Own,
    /// The descriptor after the chain's head: inside a chain, heading none.
    InsideTheChain,
    /// The head of slot `n` (modulo the slots): a chain in flight, ended
    /// early, or one never made available.
    SlotHead(usize),
    /// Any number at all.
    Raw(u32),
}

impl IdLie {
    /// The id, for a chain headed by `head` on a queue whose slots own
    /// `per_slot` descriptors each, `slots` of them.
    pub fn id(self, head: u16, per_slot: usize, slots: usize) -> u32 {
        match self {
            IdLie::Own => u32::from(head),
            IdLie::InsideTheChain => u32::from(head) + 1,
            IdLie::SlotHead(slot) => (slot % slots.max(1) * per_slot) as u32,
            IdLie::Raw(id) => id,
        }
    }
}

/// Which length a used element says.
#[derive(Clone, Copy, Debug)]
pub enum LengthLie {
    /// The bytes the device wrote.
    Honest,
    /// Fewer: a short transfer (`written` minus this, at least 0).
    Short(u32),
    /// Exactly the chain's device-writable bytes.
    Writable,
    /// The writable bytes and this many more.
    Above(u32),
    /// `u32::MAX`.
    Largest,
}

impl LengthLie {
    /// The length, for a chain the device wrote `written` bytes into, of
    /// `writable` device-writable bytes.
    pub fn length(self, written: u32, writable: u64) -> u32 {
        let writable = u32::try_from(writable).unwrap_or(u32::MAX);
        match self {
            LengthLie::Honest => written,
            LengthLie::Short(less) => written.saturating_sub(less),
            LengthLie::Writable => writable,
            LengthLie::Above(more) => writable.saturating_add(more.max(1)),
            LengthLie::Largest => u32::MAX,
        }
    }
}

/// How the device takes a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetLie {
    /// It resets, and reads 0 afterwards.
    Confirms,
    /// Left running (ACKNOWLEDGE | DRIVER) and hung: no reset ever reads 0.
    NeverConfirms,
    /// Confirms during bring-up, never afterwards: the driver must leave
    /// what it gave the device alone for ever.
    StopsConfirming,
}

/// The device-wide edges of one case: what the fake offers and how it
/// answers the bring-up.
#[derive(Clone, Copy, Debug)]
pub struct Edges {
    /// Which register layout.
    pub interface: Interface,
    /// Queue 0's maximum size (legacy: its size).
    pub max_queue_size: u16,
    /// Modern: queue 0's `queue_notify_off` (at 4 bytes per unit in a 4 KiB
    /// notify structure: 0x400 and above lie outside).
    pub queue_notify_off: u16,
    /// Modern: whether `FEATURES_OK` stays set.
    pub feature_check: FeatureCheck,
    /// Modern: whether the configuration ever settles.
    pub generation: ConfigGeneration,
    /// How a reset goes.
    pub reset: ResetLie,
}

impl Edges {
    /// Sets a fake not shared yet to these edges (before the driver sees it).
    pub fn apply<P: Personality>(&self, fake: &mut FakeDevice<P>) {
        fake.max_queue_size = self.max_queue_size;
        fake.queue_notify_off = self.queue_notify_off;
        fake.feature_check = self.feature_check;
        fake.config_generation = self.generation;
        if self.reset == ResetLie::NeverConfirms {
            fake.leave_running(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
            fake.set_reset_response(ResetResponse::Ignore);
        }
    }
}

/// A queue size: mostly ones a driver meets, sometimes every edge (0, too
/// small for a chain, not a power of two, above what a split ring allows).
pub fn queue_size(usual: &'static [u16]) -> impl Strategy<Value = u16> {
    const EDGES: &[u16] = &[0, 1, 2, 3, 4, 5, 7, 100, 255, 1024, 32768, 65535];
    prop_oneof![8 => proptest::sample::select(usual), 1 => proptest::sample::select(EDGES)]
}

/// The edges of one case, with queue 0's usual sizes `usual`.
pub fn edges(usual: &'static [u16]) -> impl Strategy<Value = Edges> {
    let interface = prop_oneof![Just(Interface::Legacy), Just(Interface::Modern)];
    let notify_off = prop_oneof![12 => Just(3u16), 1 => Just(0x3ff), 1 => Just(0x400), 1 => Just(u16::MAX)];
    let feature_check = prop_oneof![24 => Just(FeatureCheck::Accept), 1 => Just(FeatureCheck::Refuse)];
    let generation = prop_oneof![24 => Just(ConfigGeneration::Stable), 1 => Just(ConfigGeneration::NeverSettles)];
    let reset = prop_oneof![
        96 => Just(ResetLie::Confirms),
        2 => Just(ResetLie::NeverConfirms),
        1 => Just(ResetLie::StopsConfirming),
    ];
    (interface, queue_size(usual), notify_off, feature_check, generation, reset).prop_map(
        |(interface, max_queue_size, queue_notify_off, feature_check, generation, reset)| Edges {
            interface,
            max_queue_size,
            queue_notify_off,
            feature_check,
            generation,
            reset,
        },
    )
}

/// A made-up id: mostly plausible ones.
pub fn id_lie() -> impl Strategy<Value = IdLie> {
    prop_oneof![
        2 => Just(IdLie::Own),
        2 => Just(IdLie::InsideTheChain),
        3 => (0usize..64).prop_map(IdLie::SlotHead),
        1 => prop_oneof![Just(u32::MAX), Just(1u32 << 16), any::<u32>()].prop_map(IdLie::Raw),
    ]
}

/// A used length: mostly honest, otherwise every edge around the chain.
pub fn length_lie() -> impl Strategy<Value = LengthLie> {
    prop_oneof![
        6 => Just(LengthLie::Honest),
        1 => (1u32..4).prop_map(LengthLie::Short),
        1 => Just(LengthLie::Writable),
        2 => prop_oneof![Just(1u32), Just(4096), any::<u32>()].prop_map(LengthLie::Above),
        1 => Just(LengthLie::Largest),
    ]
}

/// How far a used index jumps past slots the device never wrote.
pub fn jump() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 1u16..4, 1 => Just(0x8000), 1 => Just(u16::MAX), 1 => any::<u16>()]
}

/// Free frames below which the cases of one test move to a fresh machine.
const FREE_FRAMES_LOW: usize = 4096;

/// The simulated machine the cases of one property test take turns on: a
/// fresh machine for each of 100,000 cases would leak each one's pages, so a
/// case runs on the machine the last one left clean, and gets a fresh one
/// when the last one left memory behind (a device that never confirmed its
/// reset keeps what it was given for ever) or reported misuse.
pub struct Machines {
    current: Cell<&'static SimulatedPlatform>,
}

impl Machines {
    /// A first machine.
    pub fn new() -> Machines {
        Machines { current: Cell::new(SimulatedPlatform::leak(1024)) }
    }

    /// The machine for the next case: the last one if it is clean (no misuse
    /// reported, enough frames free), otherwise a fresh one.
    pub fn next(&self) -> &'static SimulatedPlatform {
        let platform = self.current.get();
        if !platform.accounting().misuse_log().is_empty() || platform.free_frames_count() < FREE_FRAMES_LOW {
            self.current.set(SimulatedPlatform::leak(1024));
        }
        self.current.get()
    }
}

/// Checks what a case left on `platform` once everything is dropped: every
/// frame it took back (`free_before` free again) and no misuse, unless the
/// device never confirmed a reset (`abandoned` buffers then stay the
/// device's: their memory and the rings are leaked, each buffer reported
/// abandoned once, and nothing else).
pub fn check_left_behind(
    platform: &'static SimulatedPlatform,
    free_before: usize,
    abandoned: usize,
    reset_confirmed: bool,
) -> Result<(), TestCaseError> {
    let log = platform.accounting().misuse_log();
    let abandonments = log.iter().filter(|report| report.misuse == Misuse::AbandonedWhileDeviceOwned).count();
    prop_assert_eq!(abandonments, log.len(), "only abandonments: {:?}", log);
    prop_assert_eq!(abandonments, abandoned, "each buffer the device kept is abandoned once: {:?}", log);
    if reset_confirmed {
        prop_assert_eq!(platform.free_frames_count(), free_before, "every frame came back");
    }
    Ok(())
}

/// A bring-up the device's edges made fail: a typed cause, and the device
/// left reset and FAILED when it confirms resets. Returns the buffers it
/// kept: none.
pub fn check_refused_bring_up<P: Personality>(
    fake: &FakeDevice<P>,
    failure: IoFailure,
    edges: &Edges,
) -> Result<usize, TestCaseError> {
    prop_assert!(typed(failure.cause()), "bring-up failed untyped: {failure:?}");
    if edges.reset == ResetLie::Confirms {
        prop_assert_eq!(fake.device_status(), STATUS_FAILED, "reset, then FAILED");
    }
    Ok(0)
}

/// Whether `cause` says, with a type, what went wrong: never `Unspecified`
/// or words (`Other`), never the layer's "lost" or "claimed too much" (the
/// driver must refuse a length it cannot believe itself).
pub fn typed(cause: Cause) -> bool {
    !matches!(cause, Cause::Unspecified | Cause::Other(_) | Cause::RequestLost | Cause::DeviceClaimedTooMuch { .. })
}

/// Runs `case` on at least [`hostile_cases`] values of `strategy`, on
/// machines from one [`Machines`], with no failure file written into the
/// source tree.
pub fn run_hostile<S: Strategy>(
    strategy: S,
    case: impl Fn(&'static SimulatedPlatform, S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config { cases: hostile_cases(), failure_persistence: None, ..Config::default() };
    let machines = Machines::new();
    let mut runner = TestRunner::new(config);
    if let Err(failure) = runner.run(&strategy, |value| case(machines.next(), value)) {
        panic!("{failure}");
    }
}
