//! virtio-net against generated hostile devices (proptest, 100,000 cases or
//! more, both transports, through the register fake's virtio-net
//! personality): each case is a device with configuration edges (both
//! queues' sizes, the notify offset, `FEATURES_OK`, a configuration or a
//! reset that never settles) and a short script of frames and lies (used ids
//! and lengths it makes up on either queue, copies, elements for chains never
//! posted, a used index that jumps, receive buffers given back unfilled).
//! Whatever the device says: no panic, no hang, no write outside the receive
//! buffers and used rings prepared for it (the fake is fenced in), no buffer
//! handed back twice or while the device holds it (the device never holds
//! two chains over one buffer), every frame handed up the bytes the device
//! wrote, never a used length above its chain's writable bytes believed (the
//! network layer's own check would drop such a frame as
//! `DeviceClaimedTooMuch`, which no driver may leave to it), every failure
//! and every dropped frame a typed cause, and no misuse.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{Cause, NetCause, TransferOptions};
use dmakit::net::{Nic, NicState};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::fake::{FakeVirtioNet, QueueOffer, Received};
use super::hostile::{
    Edges, IdLie, LengthLie, ResetLie, check_left_behind, check_refused_bring_up, edges, id_lie, jump, length_lie,
    queue_size, run_hostile, typed,
};
use super::net::{DESCRIPTORS_PER_SLOT, MAX_FRAME, RECEIVE_QUEUE, TRANSMIT_QUEUE, VirtioNet};
use super::transport::{DmaPlatforms, Transport};

/// Receive queue sizes a case's device usually offers: one buffer, two,
/// four, eight.
const USUAL_RECEIVE_SIZES: &[u16] = &[4, 8, 16, 32];
/// Transmit queue sizes it usually offers.
const USUAL_TRANSMIT_SIZES: &[u16] = &[4, 8, 16, 32];

/// Marks a frame's serial, so that a buffer never written (zeroes, or the
/// simulated machine's stale bytes) does not pass for a frame.
const FRAME_MARK: u32 = 0xa500_0000;

type HostileNic = Nic<VirtioNet<Box<dyn Transport>>>;

/// One step of a case's script.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// A frame of `bytes` goes into the receive chain at `pick`, then
    /// `copies` elements naming `id` with `length`.
    Receive {
        pick: usize,
        bytes: usize,
        id: IdLie,
        length: LengthLie,
        copies: usize,
    },
    /// The receive chain at `pick` goes back unfilled, as `id` and `length` say.
    GiveBackEmpty {
        pick: usize,
        id: IdLie,
        length: LengthLie,
    },
    /// An element on `queue` for whatever `id` names.
    Spurious {
        queue: u16,
        id: IdLie,
        length: u32,
    },
    /// `queue`'s used index moves past slots the device never wrote.
    Jump {
        queue: u16,
        skipped: u16,
    },
    Transmit {
        bytes: usize,
    },
    Poll,
}

fn frame_bytes() -> impl Strategy<Value = usize> {
    prop_oneof![8 => 4usize..64, 1 => Just(MAX_FRAME as usize)]
}

fn step() -> impl Strategy<Value = Step> {
    let queue = prop_oneof![Just(RECEIVE_QUEUE), Just(TRANSMIT_QUEUE)];
    let id = prop_oneof![6 => Just(IdLie::Own), 1 => id_lie()];
    let copies = prop_oneof![6 => Just(1usize), 1 => Just(2)];
    prop_oneof![
        5 => (any::<usize>(), frame_bytes(), id.clone(), length_lie(), copies)
            .prop_map(|(pick, bytes, id, length, copies)| Step::Receive { pick, bytes, id, length, copies }),
        1 => (any::<usize>(), id, length_lie()).prop_map(|(pick, id, length)| Step::GiveBackEmpty { pick, id, length }),
        1 => (queue.clone(), id_lie(), any::<u32>()).prop_map(|(queue, id, length)| Step::Spurious { queue, id, length }),
        1 => (queue, jump()).prop_map(|(queue, skipped)| Step::Jump { queue, skipped }),
        2 => frame_bytes().prop_map(|bytes| Step::Transmit { bytes }),
        3 => Just(Step::Poll),
    ]
}

/// The fake of one case.
fn hostile_fake(platform: &'static SimulatedPlatform, edges: &Edges, transmit_size: u16) -> Arc<FakeVirtioNet> {
    let mut fake = FakeVirtioNet::new(platform, edges.interface);
    let device = Arc::get_mut(&mut fake).expect("not shared yet");
    edges.apply(device);
    device.more_queues[0] = QueueOffer { max_size: transmit_size, ..device.more_queues[0] };
    fake
}

/// Frame number `serial`, of `bytes` bytes: the serial first, so that a
/// frame handed up names itself.
fn frame(serial: u32, bytes: usize) -> Vec<u8> {
    let mut frame: Vec<u8> = (0..bytes).map(|index| (index as u32 ^ serial.wrapping_mul(31)) as u8).collect();
    frame[..4].copy_from_slice(&(FRAME_MARK | serial).to_le_bytes());
    frame
}

#[test]
fn hostile_devices_never_break_the_drivers_promises() {
    let strategy = (edges(USUAL_RECEIVE_SIZES), queue_size(USUAL_TRANSMIT_SIZES), prop::collection::vec(step(), 1..10));
    run_hostile(strategy, |platform, (edges, transmit_size, steps)| {
        let free_before = platform.free_frames_count();
        let fake = hostile_fake(platform, &edges, transmit_size);
        let platforms = DmaPlatforms { physical: platform, function: platform };
        let started = VirtioNet::new(fake.transport(), platforms)
            .and_then(|driver| Nic::start(driver, &TransferOptions::default()));
        let abandoned = match started {
            Ok(nic) => {
                let buffers = nic.shape().receive_depth + nic.shape().transmit_depth;
                let reset_confirmed = run_script(&fake, nic, &steps)?;
                if reset_confirmed { 0 } else { buffers }
            }
            Err(failure) => check_refused_bring_up(&fake, failure, &edges)?,
        };
        drop(fake);
        check_left_behind(platform, free_before, abandoned, edges.reset == ResetLie::Confirms)
    });
}

/// Runs `steps` against a started interface, then stops it; returns whether
/// the device confirmed the stop's reset.
fn run_script(fake: &FakeVirtioNet, mut nic: HostileNic, steps: &[Step]) -> Result<bool, TestCaseError> {
    // Every receive buffer is posted at the start, once: those and the used
    // rings are all the device may ever write.
    let mut fence = fake.held_receive_buffers();
    fence.extend([RECEIVE_QUEUE, TRANSMIT_QUEUE].map(|queue| fake.ring(queue).expect("set up").parts()[2]));
    fake.fence_writes(Some(fence));
    let slots = |queue| {
        let size = fake.ring(queue).map_or(0, |ring| usize::from(ring.size));
        (size / DESCRIPTORS_PER_SLOT).max(1)
    };
    let mut sent: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for (serial, step) in steps.iter().enumerate() {
        let serial = serial as u32;
        match *step {
            Step::Receive { pick, bytes, id, length, copies } => {
                let frame = frame(serial, bytes);
                let Some(Received { head, written, writable }) = fake.receive_held(pick, &frame) else { continue };
                let (id, length) =
                    (id.id(head, DESCRIPTORS_PER_SLOT, slots(RECEIVE_QUEUE)), length.length(written, writable));
                sent.insert(FRAME_MARK | serial, frame);
                fake.with_queue(RECEIVE_QUEUE, |queue| queue.publish(&alloc::vec![(id, length); copies], 0));
            }
            Step::GiveBackEmpty { pick, id, length } => {
                let receive_slots = slots(RECEIVE_QUEUE);
                fake.with_queue(RECEIVE_QUEUE, |queue| {
                    let Some(chain) = queue.take_held(pick) else { return };
                    let writable = chain.descriptors.iter().map(|descriptor| u64::from(descriptor.length)).sum();
                    let element = (id.id(chain.head, DESCRIPTORS_PER_SLOT, receive_slots), length.length(0, writable));
                    queue.publish(&[element], 0);
                });
            }
            Step::Spurious { queue, id, length } => {
                let id = id.id(0, DESCRIPTORS_PER_SLOT, slots(queue));
                fake.with_queue(queue, |access| access.publish(&[(id, length)], 0));
            }
            Step::Jump { queue, skipped } => {
                fake.with_queue(queue, |access| access.publish(&[], skipped));
            }
            Step::Transmit { bytes } => {
                if let Err(failure) = nic.transmit(&frame(serial, bytes)) {
                    prop_assert!(typed(failure.cause()), "transmit failed untyped: {failure:?}");
                }
            }
            Step::Poll => poll(fake, &mut nic, &sent)?,
        }
    }
    poll(fake, &mut nic, &sent)?;
    let stopped = match nic.state() {
        NicState::Running => nic.stop(),
        NicState::Stopped => Ok(()),
    };
    drop(nic);
    Ok(stopped.is_ok() && fake.device_status() == 0)
}

/// Polls the interface once and checks what it handed up and dropped.
fn poll(fake: &FakeVirtioNet, nic: &mut HostileNic, sent: &BTreeMap<u32, Vec<u8>>) -> Result<(), TestCaseError> {
    if nic.state() == NicState::Stopped {
        return Ok(());
    }
    let dropped = nic.stats().dropped;
    let mut frames = Vec::new();
    let polled = nic.poll(&mut |frame| frames.push(frame.to_vec()));
    if let Err(failure) = polled {
        prop_assert!(typed(failure.cause()), "poll failed untyped: {failure:?}");
    }
    let stats = nic.stats();
    if stats.dropped > dropped {
        let cause = stats.last_drop.expect("a drop keeps its cause").cause();
        prop_assert!(typed(cause), "a frame dropped without a cause of the driver's: {cause:?}");
        let twice = matches!(cause, Cause::Net(NetCause::SlotNotPosted { .. }));
        prop_assert!(!twice, "the driver handed back a buffer it did not hold: {cause:?}");
    }
    // A device that lies about ids may hand a buffer up again, or under
    // another length, and the driver cannot tell; but whatever comes up is
    // the bytes the device wrote there, never more than a buffer holds.
    for delivered in frames {
        prop_assert!(delivered.len() as u64 <= MAX_FRAME, "more than a buffer holds: {}", delivered.len());
        let Some(serial) = delivered.first_chunk::<4>().map(|bytes| u32::from_le_bytes(*bytes)) else { continue };
        let Some(frame) = sent.get(&serial) else { continue };
        let common = delivered.len().min(frame.len());
        prop_assert!(delivered[..common] == frame[..common], "frame {:#x} handed up with wrong bytes", serial);
    }
    // A buffer the device holds twice was posted again while the device
    // still held it.
    let mut held = fake.held_receive_buffers();
    held.sort_unstable();
    let twice = held.windows(2).any(|pair| pair[0].0 + pair[0].1 > pair[1].0);
    prop_assert!(!twice, "a receive buffer posted while the device held it: {held:?}");
    Ok(())
}
