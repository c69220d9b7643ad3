//! The ATA driver against a drive and an engine that lie (`fake/hostile.rs`):
//! statuses that cannot occur at the end of a command are failures that say
//! which.

use super::*;
use dmakit::block::BlockOperation;

use crate::ata::fake::{Lie, hostile_config, identify_answers, says_why};

/// Reads 8 sectors into a buffer above 4 GiB with the channel telling `lie`.
fn read_told(setup: &Setup, disk: &QueuedDisk<AtaDisk<FakePorts>>, lie: Lie) -> Result<(), IoFailure> {
    setup.fake.lie_with(&[lie]);
    let mut target = high_with_old_bytes(setup.platform, 4096);
    let result = disk.read(0, 8, &mut target, 0);
    if result.is_err() {
        assert_eq!(target.to_vec(0, 4096).unwrap(), vec![OLD_BYTE; 4096], "{lie:?}: nothing came back");
    }
    result
}

fn failed(cause: AtaCause) -> Result<(), IoFailure> {
    Err(IoFailure::new(IoReturn::IoError, Cause::Ata(cause)))
}

#[test]
fn err_with_an_empty_error_register_is_not_a_drive_error() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    let status = STATUS_READY | STATUS_ERROR;
    assert_eq!(
        read_told(&setup, &disk, Lie::EndStatus { status, error: 0 }),
        failed(AtaCause::ErrorRegisterEmpty { status })
    );
    let error = 0x40;
    assert_eq!(
        read_told(&setup, &disk, Lie::EndStatus { status, error }),
        failed(AtaCause::DriveError { status, error })
    );
    read_told(&setup, &disk, Lie::Honest).expect("the disk stays usable");
}

#[test]
fn a_command_that_ends_without_drdy_fails() {
    let setup = setup(Some(drive(Addressing::Lba28)), None);
    let disk = disk(&setup, 0);
    for status in [0x00, 0x10] {
        let lie = Lie::EndStatus { status, error: 0 };
        assert_eq!(read_told(&setup, &disk, lie), failed(AtaCause::DriveNotReady { status }));
    }
    read_told(&setup, &disk, Lie::Honest).expect("the disk stays usable");
}

/// Sectors on a hostile case's disk: small, so that a case is cheap.
const CASE_SECTORS: u64 = 64;

/// One request of a case, and the lie told about its command.
#[derive(Clone, Debug)]
struct Step {
    operation: BlockOperation,
    lba: u64,
    sectors: u64,
    /// Where the buffer lies: above 4 GiB it is bounced.
    placement: Placement,
    lie: Lie,
    /// `start` the disk first (a timeout or a stop leaves it stopped).
    restart: Restart,
}

#[derive(Clone, Copy, Debug)]
enum Placement {
    Low,
    High,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Restart {
    Start,
    AsItIs,
}

/// Statuses at and past every edge: none, each bit alone, BSY with others,
/// the floating bus, and any byte.
fn status() -> impl Strategy<Value = u8> {
    let edges = vec![0x00, 0x01, 0x08, 0x10, 0x20, 0x40, 0x41, 0x48, 0x50, 0x58, 0x61, 0x80, 0x81, 0x88, 0xd0, 0xff];
    prop_oneof![prop::sample::select(edges), any::<u8>()]
}

fn lie() -> impl Strategy<Value = Lie> {
    prop_oneof![
        3 => Just(Lie::Honest),
        2 => (status(), prop_oneof![Just(0u8), any::<u8>()]).prop_map(|(status, error)| Lie::EndStatus { status, error }),
        1 => any::<u8>().prop_map(Lie::EngineStatus),
        1 => Just(Lie::ActiveForever),
        1 => prop::sample::select(vec![STATUS_BUSY, STATUS_READY | STATUS_DRQ, STATUS_BUSY | STATUS_DRQ, 0xff])
            .prop_map(Lie::StatusForever),
        1 => (0u64..8).prop_map(Lie::ShortSectors),
        1 => (0u64..8).prop_map(Lie::BadSector),
        1 => Just(Lie::BusError),
        1 => Just(Lie::DeviceFault),
        1 => Just(Lie::InterruptBeforeStart),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let operation = prop_oneof![Just(BlockOperation::Read), Just(BlockOperation::Write)];
    let placement = prop_oneof![Just(Placement::Low), Just(Placement::High)];
    let restart = prop_oneof![3 => Just(Restart::AsItIs), 1 => Just(Restart::Start)];
    (operation, 0..CASE_SECTORS, 1u64..9, placement, lie(), restart).prop_map(
        |(operation, lba, sectors, placement, lie, restart)| Step { operation, lba, sectors, placement, lie, restart },
    )
}

/// Runs one generated case: IDENTIFY answered with `answer`, then each step's
/// request with its lie. Every failure must say why, the channel may write
/// memory only inside the segments lent for the request running, nothing
/// after the request is over, and every page and prepared command goes back.
fn run_case(answer: Option<[u16; 256]>, steps: &[Step]) -> Result<(), TestCaseError> {
    let platform = crate::ata::fake::case_machine();
    let before = platform.accounting().stats();
    let misuses = platform.accounting().misuse_log().len();
    let mut image = vec![0; (CASE_SECTORS * SECTOR_SIZE) as usize];
    pattern::fill(0, b'H', &mut image);
    let identity = Identity {
        sectors: CASE_SECTORS,
        addressing: Addressing::Lba48,
        model: String::from("LIAR"),
        flush: CacheFlush::NoCache,
    };
    let fake = FakeChannel::new(platform, Some(FakeDrive { image, identity }), None);
    *fake.identify_words.lock() = answer;
    let channel = Arc::new(new_channel(platform, &fake).unwrap());
    match channel.identify(0) {
        Some(Ok(identity)) => {
            let disk = QueuedDisk::new(AtaDisk::new(channel.clone(), 0, identity), &WAITER).unwrap();
            fake.lie_with(&steps.iter().map(|step| step.lie).collect::<Vec<_>>());
            for step in steps {
                run_step(platform, &fake, &disk, step)?;
            }
        }
        Some(Err(failure)) => prop_assert!(says_why(failure.cause()), "IDENTIFY refused without a cause: {failure}"),
        None => prop_assert!(false, "the drive answered IDENTIFY"),
    }
    drop(channel);
    let after = platform.accounting().stats();
    prop_assert_eq!(after.pages_in_use, before.pages_in_use, "every bounce page went back");
    prop_assert_eq!(after.prepared_commands, before.prepared_commands, "every command completed, the table too");
    prop_assert_eq!(after.leaked_transfers, before.leaked_transfers, "nothing abandoned: the engine always stops");
    let log = platform.accounting().misuse_log();
    prop_assert!(log.len() == misuses, "DMA misuse: {:?}", &log[misuses..]);
    Ok(())
}

fn run_step(
    platform: &'static SimulatedPlatform,
    fake: &FakeChannel,
    disk: &QueuedDisk<AtaDisk<FakePorts>>,
    step: &Step,
) -> Result<(), TestCaseError> {
    if step.restart == Restart::Start
        && let Err(failure) = disk.start()
    {
        prop_assert!(says_why(failure.cause()), "start failed without a cause: {failure}");
    }
    let placement = match step.placement {
        Placement::Low => Constraints::below(PhysAddr::new(1 << 32)),
        Placement::High => Constraints::NONE,
    };
    let mut buffer = DmaBuffer::allocate(platform, step.sectors * SECTOR_SIZE, IoDirection::InOut, placement).unwrap();
    let result = match step.operation {
        BlockOperation::Read => disk.read(step.lba, step.sectors, &mut buffer, 0),
        BlockOperation::Write => disk.write(step.lba, step.sectors, &mut buffer, 0),
    };
    if let Err(failure) = result {
        prop_assert!(says_why(failure.cause()), "{step:?} failed without a cause: {failure}");
    }
    let segments = disk.last_segments();
    for (address, bytes) in fake.take_writes() {
        let inside = segments.iter().any(|segment| {
            address >= segment.address.as_u64() && address + bytes <= segment.address.as_u64() + segment.length
        });
        prop_assert!(inside, "{step:?}: the channel wrote {bytes} bytes at {address:#x}, outside {segments:?}");
    }
    // A drive that answers after the request ended: with the engine stopped
    // it moves nothing (a write into freed memory would fail the fake).
    fake.finish_late();
    prop_assert_eq!(fake.take_writes(), Vec::new(), "{:?}: the channel wrote after the request ended", step);
    Ok(())
}

proptest! {
    #![proptest_config(hostile_config())]
    #[test]
    fn a_lying_channel_gets_no_panic_no_stray_write_and_a_cause_for_every_failure(
        answer in identify_answers(CASE_SECTORS),
        steps in prop::collection::vec(step(), 1..4),
    ) {
        run_case(answer, &steps)?;
    }
}
