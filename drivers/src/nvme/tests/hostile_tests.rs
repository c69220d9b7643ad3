//! The NVMe driver against a hostile controller, under property tests: each
//! case brings a fresh controller up honestly, then interleaves submissions,
//! collects and waits with completions that lie (`fake/hostile.rs`). Every
//! case must end with no panic, every request back exactly once (its buffer
//! unprepared, a successful read holding the medium's bytes), every failure a
//! typed cause, no data moved outside the memory lent at that moment, the
//! controller disabled before its memory went back, all of that memory back,
//! and nothing new in the platform's misuse log. Bring-up's own lies
//! (CSTS.RDY, CFS, CAP and Identify at every edge) are `bring_up_lie_tests`.

use core::cell::Cell;

use dmakit::block::{Finished, RequestHandle};
use dmakit::dma::DmaPlatform;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::super::fake::{Answer, Forged};
use super::*;
use crate::test_support::hostile_cases;

/// Blocks of the hostile controller's namespace: small, so a case is cheap.
pub(super) const CASE_BLOCKS: u64 = 256;
/// Below this many free frames a test thread takes a fresh machine: the
/// cases share one, so each must give back what it took.
const FRESH_MACHINE_BELOW: usize = 4096;

/// The physical ranges of `length` bytes of `buffer` from `offset`: what the
/// controller may move a request's data through (nothing is bounced for a
/// 64-bit controller).
pub(super) fn lent_ranges(buffer: &DmaBuffer, offset: u64, length: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut at = offset;
    while at < offset + length {
        let (address, bytes) = buffer.descriptor().physical_segment(at).expect("inside the buffer");
        let bytes = bytes.min(offset + length - at);
        ranges.push((address.as_u64(), bytes));
        at += bytes;
    }
    ranges
}

std::thread_local! {
    static MACHINE: Cell<Option<&'static SimulatedPlatform>> = const { Cell::new(None) };
}

/// This thread's simulated machine, fresh when the last one ran low.
pub(super) fn machine() -> &'static SimulatedPlatform {
    MACHINE.with(|machine| match machine.get() {
        Some(platform) if platform.free_frames_count() >= FRESH_MACHINE_BELOW => platform,
        _ => {
            let platform = SimulatedPlatform::leak(64);
            machine.set(Some(platform));
            platform
        }
    })
}

/// The medium every case starts with, filled once: a fill per case costs
/// more than the rest of a short case.
fn medium() -> &'static [u8] {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| expected(0, CASE_BLOCKS))
}

/// A fresh copy of the medium, for one case's controller.
pub(super) fn case_image() -> Vec<u8> {
    medium().to_vec()
}

/// `blocks` blocks of the medium from `lba`.
fn medium_blocks(lba: u64, blocks: u64) -> &'static [u8] {
    &medium()[(lba * BLOCK) as usize..((lba + blocks) * BLOCK) as usize]
}

/// Runs `check` on `strategy`'s cases: the case count, no files
/// written; the shrunk failing case, if any, is the panic's message.
pub(super) fn run_hostile<S: Strategy>(strategy: S, check: impl Fn(&S::Value) -> Result<(), TestCaseError>) {
    let config = Config { cases: hostile_cases(), failure_persistence: None, ..Config::default() };
    if let Err(failure) = TestRunner::new(config).run(&strategy, |case| check(&case)) {
        panic!("{failure}");
    }
}

/// What a case found on its machine: the frames free and the misuse reports.
pub(super) struct Before {
    free: usize,
    misuse: usize,
}

impl Before {
    pub(super) fn now(platform: &SimulatedPlatform) -> Before {
        Before { free: platform.free_frames_count(), misuse: platform.accounting().misuse_log().len() }
    }
}

/// Whether the case's controller confirmed its last disable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// It did: everything it was given must be back.
    Stopped,
    /// It never stops: what it holds is leaked on purpose.
    NeverStopped,
}

/// After the disk is gone: every disable came while the controller's memory
/// was allocated, the memory is back (unless it never stopped), and the
/// misuse log has nothing new.
pub(super) fn check_case_end(
    platform: &SimulatedPlatform,
    fake: &FakeNvme,
    before: Before,
    ending: Ending,
) -> Result<(), TestCaseError> {
    prop_assert!(fake.disables.lock().iter().all(|&allocated| allocated), "memory went back before a disable");
    if ending == Ending::Stopped {
        prop_assert_eq!(platform.free_frames_count(), before.free, "memory kept though the controller stopped");
    }
    let misuse = platform.accounting().misuse_log();
    prop_assert!(misuse.len() == before.misuse, "misuse: {:?}", &misuse[before.misuse..]);
    Ok(())
}

/// What the test and the controller do at one step of a case.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Submits a read or a write of `blocks` blocks at `lba`, `offset` blocks
    /// into its buffer.
    Submit { operation: BlockOperation, lba: u64, blocks: u64, offset: u64 },
    /// The controller runs a held command and answers as it likes.
    Run { pick: usize, answer: Answer },
    /// It posts a completion nobody asked for, now.
    Forge(Forged),
    /// It posts one inside the next command fetch (before the driver looks).
    ForgeAtDoorbell(Forged),
    /// It forgets a held command: that one never completes.
    Lose { pick: usize },
    /// It dies (CSTS.CFS).
    Fatal,
    /// The work loop runs (as after an interrupt).
    Collect,
    /// The test waits for one request: a held one times out.
    Wait { pick: usize },
}

fn any_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => Just(Answer::Honest),
        1 => Just(Answer::Twice),
        1 => (0u16..80).prop_map(Answer::CommandId),
        1 => prop_oneof![Just(0u16), Just(2), any::<u16>()].prop_map(Answer::Queue),
        1 => prop_oneof![0u16..10, any::<u16>()].prop_map(Answer::Head),
        1 => any::<u16>().prop_map(Answer::Status),
        1 => Just(Answer::PreviousPhase),
    ]
}

fn any_forged() -> impl Strategy<Value = Forged> {
    let head = prop_oneof![Just(None), (0u16..10).prop_map(Some)];
    let status = prop_oneof![Just(0u16), any::<u16>()];
    (0u16..10, head, status).prop_map(|(command_id, head, status)| Forged { command_id, head, status })
}

fn any_step() -> impl Strategy<Value = Step> {
    let operation = prop_oneof![Just(BlockOperation::Read), Just(BlockOperation::Write)];
    // Up to 72 blocks (36 KiB): both sides of the 32 KiB SGL threshold.
    let submit = (operation, 0..CASE_BLOCKS, 1u64..=72, 0u64..=2).prop_map(|(operation, lba, blocks, offset)| {
        let blocks = blocks.min(CASE_BLOCKS - lba);
        Step::Submit { operation, lba, blocks, offset }
    });
    prop_oneof![
        4 => submit,
        6 => (any::<usize>(), any_answer()).prop_map(|(pick, answer)| Step::Run { pick, answer }),
        1 => any_forged().prop_map(Step::Forge),
        1 => any_forged().prop_map(Step::ForgeAtDoorbell),
        1 => any::<usize>().prop_map(|pick| Step::Lose { pick }),
        1 => Just(Step::Fatal),
        2 => Just(Step::Collect),
        1 => any::<usize>().prop_map(|pick| Step::Wait { pick }),
    ]
}

/// One I/O case: the controller, whether it takes SGLs, and the steps.
#[derive(Clone, Debug)]
struct IoCase {
    max_entries: u16,
    sgl: bool,
    steps: Vec<Step>,
}

fn any_io_case() -> impl Strategy<Value = IoCase> {
    let max_entries = prop_oneof![Just(3u16), Just(4), Just(8)];
    (max_entries, any::<bool>(), proptest::collection::vec(any_step(), 1..10))
        .prop_map(|(max_entries, sgl, steps)| IoCase { max_entries, sgl, steps })
}

/// A request the test submitted: its handle until it is waited for, what
/// it asked, and the memory the controller may use for it while in flight.
struct Sent {
    handle: Option<RequestHandle>,
    operation: BlockOperation,
    lba: u64,
    blocks: u64,
    offset: u64,
    lent: Vec<(u64, u64)>,
    descriptor: u64,
}

/// Whether a request's failure says why in terms a caller can act on: the
/// controller's typed cause, a timeout, or the stop that followed a lie.
pub(super) fn typed(cause: &Cause) -> bool {
    matches!(cause, Cause::Nvme(_) | Cause::TimedOut { .. } | Cause::DriverStopped)
}

/// Checks what came back for `sent`: once, unprepared, typed, and a
/// successful read with the medium's bytes.
fn check_finished(sent: &Sent, finished: Finished, seen: &mut Vec<u64>) -> Result<(), TestCaseError> {
    if let Err(failure) = &finished.result {
        prop_assert!(typed(&failure.cause()), "untyped failure: {failure}");
    }
    let Some(buffer) = finished.buffer else {
        prop_assert!(finished.result.is_err(), "a success without its buffer");
        return Ok(());
    };
    prop_assert_eq!(buffer.descriptor().id(), sent.descriptor, "another request's buffer came back");
    prop_assert!(!seen.contains(&sent.descriptor), "buffer {} handed back twice", sent.descriptor);
    seen.push(sent.descriptor);
    prop_assert_eq!(buffer.descriptor().prepare_count(), 0, "handed back still prepared");
    if finished.result.is_ok() && sent.operation == BlockOperation::Read {
        let bytes = buffer.to_vec(sent.offset * BLOCK, (sent.blocks * BLOCK) as usize).unwrap();
        prop_assert!(bytes == medium_blocks(sent.lba, sent.blocks), "a successful read without the medium's bytes");
    }
    Ok(())
}

fn run_io_case(case: &IoCase) -> Result<(), TestCaseError> {
    let platform = machine();
    let before = Before::now(platform);
    let fake = FakeNvme::new(platform, case_image(), case.max_entries, case.sgl);
    let controller = Controller::new(Arc::new(FakeRegisters(fake.clone())), FAKE_REGISTER_BYTES, &WAITER).unwrap();
    let disk = QueuedDisk::new(NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT).unwrap(), &WAITER).unwrap();
    fake.turn_hostile();
    let mut sent: Vec<Sent> = Vec::new();
    let mut seen = Vec::new();
    let lend = |sent: &[Sent]| {
        let still = sent.iter().filter(|sent| sent.handle.as_ref().is_some_and(|handle| !handle.is_finished()));
        fake.lend(still.flat_map(|sent| sent.lent.iter().copied()).collect());
    };
    for &step in &case.steps {
        match step {
            Step::Submit { operation, lba, blocks, offset } => {
                let mut buffer =
                    DmaBuffer::allocate(platform, (blocks + offset) * BLOCK, IoDirection::InOut, Constraints::NONE)
                        .unwrap();
                // A write puts back what the medium holds, so reads stay checkable.
                buffer.write_bytes(offset * BLOCK, medium_blocks(lba, blocks)).unwrap();
                let lent = lent_ranges(&buffer, offset * BLOCK, blocks * BLOCK);
                let descriptor = buffer.descriptor().id();
                // Lent before the doorbell: the controller holds it from then on.
                let mut now_lent: Vec<_> = lent.clone();
                sent.iter()
                    .filter(|sent| sent.handle.as_ref().is_some_and(|handle| !handle.is_finished()))
                    .for_each(|sent| now_lent.extend(&sent.lent));
                fake.lend(now_lent);
                let request = BlockRequest::new(operation, lba, blocks, buffer, offset * BLOCK);
                let handle = match disk.submit(request) {
                    Ok(handle) => Some(handle),
                    Err(rejected) => {
                        prop_assert!(typed(&rejected.failure.cause()), "untyped refusal: {}", rejected.failure);
                        None
                    }
                };
                sent.push(Sent { handle, operation, lba, blocks, offset, lent, descriptor });
            }
            Step::Run { pick, answer } => {
                fake.run_held(pick, answer);
            }
            Step::Forge(forged) => fake.forge(forged),
            Step::ForgeAtDoorbell(forged) => fake.forge_at_next_doorbell(forged),
            Step::Lose { pick } => fake.lose_held(pick),
            Step::Fatal => fake.raise_fatal(),
            Step::Collect => disk.run_work_loop(),
            Step::Wait { pick } => {
                let waiting: Vec<usize> = (0..sent.len()).filter(|&index| sent[index].handle.is_some()).collect();
                if !waiting.is_empty() {
                    let index = waiting[pick % waiting.len()];
                    let finished = disk.wait(sent[index].handle.take().unwrap());
                    check_finished(&sent[index], finished, &mut seen)?;
                }
            }
        }
        lend(&sent);
    }
    // The controller turns honest: whatever it still holds runs, then every
    // request is waited for (one it lost times out).
    while fake.run_held(0, Answer::Honest) {
        lend(&sent);
    }
    for index in 0..sent.len() {
        if let Some(handle) = sent[index].handle.take() {
            let finished = disk.wait(handle);
            check_finished(&sent[index], finished, &mut seen)?;
            lend(&sent);
        }
    }
    prop_assert_eq!(fake.violations(), Vec::<String>::new());
    drop(disk);
    check_case_end(platform, &fake, before, Ending::Stopped)
}

#[test]
fn a_hostile_controller_in_the_io_phase_never_gets_memory_it_was_not_lent() {
    run_hostile(any_io_case(), run_io_case);
}
