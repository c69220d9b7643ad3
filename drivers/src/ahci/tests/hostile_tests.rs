//! The AHCI driver against an HBA that lies (`fake/hostile.rs`): completions
//! for slots never issued, NCQ completions before the command was sent, a
//! byte count above the request, task files that cannot end a command. Each
//! fails with a cause that names it, and nothing goes back while the port may
//! still use it.

use dmakit::dma::{IoFailure, Misuse, MisuseReport};
use proptest::prelude::*;

use super::*;
use crate::ahci::fake::{Busy, Lie};
use crate::ata::fake::{hostile_config, identify_answers, says_why};

/// Reads 8 sectors at 16 with the HBA telling `lie` at the command.
fn read_told(setup: &Setup, lie: Lie) -> Result<(), IoFailure> {
    setup.fake.lie_with(&[lie]);
    let mut target = buffer(setup, 8, Constraints::NONE);
    setup.disk.read(16, 8, &mut target, 0)
}

fn failed(code: IoReturn, cause: AhciCause) -> Result<(), IoFailure> {
    Err(IoFailure::new(code, Cause::Ahci(cause)))
}

/// The meaning recovery gave a command that failed, if it failed so.
fn meaning(result: Result<(), IoFailure>) -> &'static str {
    match result.map_err(|failure| failure.cause()) {
        Err(Cause::Ahci(AhciCause::CommandFailed { meaning, .. })) => meaning,
        other => panic!("a failed command, not {other:?}"),
    }
}

#[test]
fn a_byte_count_above_the_request_fails_it() {
    let setup = setup_with(true, false);
    let cause = AhciCause::ByteCountAboveRequest { slot: 0, count: 8 * 512 + 2, prepared: 8 * 512 };
    assert_eq!(read_told(&setup, Lie::ByteCountAbove(2)), failed(IoReturn::IoError, cause));
    read_told(&setup, Lie::Honest).expect("the port works on");
}

#[test]
fn a_slot_never_issued_showing_in_pxci_or_pxsact_stops_the_port() {
    for register in [Busy::Issued, Busy::Active] {
        let setup = setup();
        let lie = Lie::Phantom { slot: 7, register };
        assert_eq!(read_told(&setup, lie), failed(IoReturn::IoError, AhciCause::CommandsNotIssued { slots: 1 << 7 }));
        let stop = *setup.fake.stops.lock().last().expect("the port was stopped");
        assert!(stop.memory_allocated, "{register:?}: stopped before its memory went back");
        setup.disk.start().unwrap();
        read_told(&setup, Lie::Honest).expect("started again, the port works");
    }
}

#[test]
fn an_ncq_completion_before_the_command_was_sent_stops_the_port() {
    let setup = setup();
    let cause = AhciCause::CompletedBeforeIssued { slots: 1 };
    assert_eq!(read_told(&setup, Lie::CompletedBeforeIssue), failed(IoReturn::IoError, cause));
    assert!(setup.fake.stops.lock().last().unwrap().memory_allocated);
}

#[test]
fn a_completed_command_whose_task_file_is_busy_or_asks_for_data_fails() {
    let setup = setup_with(true, false);
    for task_file in [0xd0, 0x58, 0x88] {
        let said = meaning(read_told(&setup, Lie::TaskFile(task_file)));
        assert!(said.contains("BSY or DRQ"), "{task_file:#x}: {said}");
    }
    read_told(&setup, Lie::Honest).expect("the port works on");
}

#[test]
fn err_with_an_empty_error_register_says_so() {
    let setup = setup_with(true, false);
    let said = meaning(read_told(&setup, Lie::TaskFile(0x51)));
    assert!(said.contains("empty error register"), "{said}");
}

/// Sectors on a hostile case's disk: small, so that a case is cheap.
const CASE_SECTORS: u64 = 64;

/// One request of a case, and the lie told at the PxCI write that issues it.
#[derive(Clone, Debug)]
struct Step {
    operation: BlockOperation,
    lba: u64,
    sectors: u64,
    /// Below 4 GiB, or anywhere (bounced on a 32-bit HBA).
    low: Placement,
    lie: Lie,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Low,
    Anywhere,
}

/// The HBA and drive a case runs on.
#[derive(Clone, Copy, Debug)]
struct Machine {
    addresses_64_bit: bool,
    ncq: bool,
    /// Queued commands wait for the case's completions, in its order.
    hold: bool,
}

/// Task files at and past every edge: BSY or DRQ with others, ERR with and
/// without an error register, any word.
fn task_file() -> impl Strategy<Value = u32> {
    let edges = vec![0x00, 0x40, 0x41, 0x50, 0x51, 0x58, 0x80, 0x88, 0xd0, 0xff, 0x0441, 0x4051, 0xffff];
    prop_oneof![prop::sample::select(edges), any::<u32>()]
}

fn lie() -> impl Strategy<Value = Lie> {
    let register = prop_oneof![Just(Busy::Issued), Just(Busy::Active)];
    prop_oneof![
        4 => Just(Lie::Honest),
        2 => (0u8..32, register).prop_map(|(slot, register)| Lie::Phantom { slot, register }),
        1 => Just(Lie::CompletedBeforeIssue),
        1 => prop_oneof![Just(1u32), Just(512), any::<u32>()].prop_map(Lie::ByteCountAbove),
        2 => task_file().prop_map(Lie::TaskFile),
        1 => prop_oneof![Just(IS_TASK_FILE_ERROR), Just(IS_HOST_BUS_FATAL), any::<u32>()].prop_map(Lie::Interrupts),
        1 => any::<u32>().prop_map(Lie::Link),
        1 => prop_oneof![Just(TFD_BUSY), Just(TFD_DATA_REQUEST | 0x40), Just(0xff)].prop_map(Lie::TaskFileForever),
        1 => Just(Lie::NeverStops),
        1 => Just(Lie::Silent),
        1 => (0..CASE_SECTORS).prop_map(Lie::BadSector),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let operation = prop_oneof![Just(BlockOperation::Read), Just(BlockOperation::Write)];
    let low = prop_oneof![Just(Placement::Low), Just(Placement::Anywhere)];
    (operation, 0..CASE_SECTORS, 1u64..9, low, lie()).prop_map(|(operation, lba, sectors, low, lie)| Step {
        operation,
        lba,
        sectors,
        low,
        lie,
    })
}

fn machine() -> impl Strategy<Value = Machine> {
    (any::<bool>(), prop::bool::weighted(0.8), any::<bool>()).prop_map(|(addresses_64_bit, ncq, hold)| Machine {
        addresses_64_bit,
        ncq,
        hold,
    })
}

/// Runs one generated case: the port brought up with IDENTIFY answered with
/// `answer`, the steps' requests submitted with their lies, completed in
/// `order` when held. Every failure must say why, the HBA may write only
/// inside the buffers of the case's requests (none bounces, so those are the
/// segments lent) and never into freed memory (the fake asserts that), and
/// every page and prepared command goes back, unless the port would not stop:
/// then what it held is abandoned and its own memory dropped unreleased,
/// the only misuses reported.
fn run_case(
    answer: Option<[u16; 256]>,
    machine: Machine,
    steps: &[Step],
    order: &[prop::sample::Index],
) -> Result<(), TestCaseError> {
    let platform = crate::ata::fake::case_machine();
    let before = platform.accounting().stats();
    let misuses = platform.accounting().misuse_log().len();
    let mut image = vec![0; (CASE_SECTORS * SECTOR_SIZE) as usize];
    pattern::fill(0, b'H', &mut image);
    let model = String::from("LIAR");
    let identity =
        DriveIdentity { sectors: CASE_SECTORS, ncq: machine.ncq, queue_depth: 32, model, flush: CacheFlush::NoCache };
    let fake = FakeHba::new(platform, machine.addresses_64_bit, FakeDisk { image, identity });
    *fake.identify_words.lock() = answer;
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let hba = Hba::reset(registers.clone(), 0x1100, &WAITER).unwrap();
    match AhciPort::new(registers, hba.capabilities(), 0, platform, &WAITER) {
        Ok(port) => run_requests(platform, &fake, QueuedDisk::new(port, &WAITER).unwrap(), machine, steps, order)?,
        Err(failure) => prop_assert!(says_why(failure.cause()), "bring-up failed without a cause: {failure}"),
    }
    let after = platform.accounting().stats();
    let log = platform.accounting().misuse_log();
    let new_misuses = &log[misuses..];
    if fake.stuck.load(Ordering::Relaxed) {
        // Its requests abandoned, its own memory dropped unreleased: both leaked, never reused.
        let abandoned = |report: &MisuseReport| {
            matches!(report.misuse, Misuse::AbandonedWhileDeviceOwned | Misuse::DroppedWhilePrepared)
        };
        prop_assert!(new_misuses.iter().all(abandoned), "DMA misuse: {:?}", new_misuses);
    } else {
        prop_assert!(new_misuses.is_empty(), "DMA misuse: {:?}", new_misuses);
        prop_assert_eq!(after.pages_in_use, before.pages_in_use, "every bounce page went back");
        prop_assert_eq!(after.prepared_commands, before.prepared_commands, "every command completed");
        prop_assert_eq!(after.leaked_transfers, before.leaked_transfers, "nothing abandoned");
    }
    Ok(())
}

fn run_requests(
    platform: &'static SimulatedPlatform,
    fake: &FakeHba,
    disk: QueuedDisk<AhciPort<FakeRegisters>>,
    machine: Machine,
    steps: &[Step],
    order: &[prop::sample::Index],
) -> Result<(), TestCaseError> {
    fake.hold.store(machine.hold, Ordering::Relaxed);
    fake.lie_with(&steps.iter().map(|step| step.lie).collect::<Vec<_>>());
    let mut handles = Vec::new();
    let mut lent = Vec::new();
    for step in steps {
        let placement = match (step.low, machine.addresses_64_bit) {
            (Placement::Anywhere, true) => Constraints::NONE,
            // A 32-bit HBA would bounce it: the segments lent would not be the buffer's.
            _ => low(),
        };
        let buffer = DmaBuffer::allocate(platform, step.sectors * SECTOR_SIZE, IoDirection::InOut, placement).unwrap();
        let start = buffer.descriptor().physical_segment(0).unwrap().0.as_u64();
        lent.push(start..start + step.sectors * SECTOR_SIZE);
        match disk.submit(BlockRequest::new(step.operation, step.lba, step.sectors, buffer, 0)) {
            Ok(handle) => handles.push(handle),
            Err(rejected) => prop_assert!(says_why(rejected.failure.cause()), "{step:?}: {}", rejected.failure),
        }
    }
    for index in order {
        let tags = fake.queued_tags();
        if tags.is_empty() {
            break;
        }
        fake.complete(*index.get(&tags));
        disk.run_work_loop();
    }
    for handle in handles {
        let finished = disk.wait(handle);
        if let Err(failure) = finished.result {
            prop_assert!(says_why(failure.cause()), "a request failed without a cause: {failure}");
        }
        let stuck = fake.stuck.load(Ordering::Relaxed);
        prop_assert!(finished.buffer.is_some() || stuck, "a buffer was kept from a port that stopped");
    }
    // The drive answers what it still holds after every request ended: into
    // memory still allocated only (the fake asserts it).
    for tag in fake.queued_tags() {
        fake.complete(tag);
    }
    for (address, bytes) in fake.take_writes() {
        let inside = lent.iter().any(|range| range.start <= address && address + bytes <= range.end);
        prop_assert!(inside, "the HBA wrote {bytes} bytes at {address:#x}, outside the buffers {lent:x?}");
    }
    drop(disk);
    Ok(())
}

proptest! {
    #![proptest_config(hostile_config())]
    #[test]
    fn a_lying_hba_gets_no_panic_no_stray_write_and_a_cause_for_every_failure(
        answer in identify_answers(CASE_SECTORS),
        machine in machine(),
        steps in prop::collection::vec(step(), 1..4),
        order in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        run_case(answer, machine, &steps, &order)?;
    }
}
