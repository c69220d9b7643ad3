//! The network layer against a fake interface that moves bytes only through
//! the segments it was lent, and says what the test tells it to say (including
//! lengths a device must not be believed about).

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;

use super::*;
use crate::dma::DmaPlatform;
use crate::dma::simulated::SimulatedPlatform;
use crate::dma::{Cause, IoFailure, IoReturn, LentTransfer, NetCause, Segment, Specification, TransferOptions};

const HEADER: u64 = 12;
const MAX_FRAME: u64 = 1514;

/// A device with `depth` receive and transmit buffers.
struct FakeInterface {
    platform: &'static SimulatedPlatform,
    depth: usize,
    /// The segments of each posted receive buffer, in posting order.
    receive: Mutex<VecDeque<(Slot, Vec<Segment>)>>,
    /// What each posted transmit buffer held, as the device read it.
    sent: Mutex<Vec<Vec<u8>>>,
    events: Mutex<Vec<NetEvent>>,
    stops: Mutex<Quiesced>,
}

impl FakeInterface {
    fn new(platform: &'static SimulatedPlatform, depth: usize) -> FakeInterface {
        FakeInterface {
            platform,
            depth,
            receive: Mutex::new(VecDeque::new()),
            sent: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            stops: Mutex::new(Quiesced::Stopped),
        }
    }

    /// Writes `bytes` into the oldest posted receive buffer, through its
    /// segments and never past them, and reports `claimed` bytes written.
    fn deliver(&self, bytes: &[u8], claimed: u64) {
        let (slot, segments) = self.receive.lock().pop_front().expect("a posted receive buffer");
        let mut rest = bytes;
        for segment in segments {
            let length = (segment.length as usize).min(rest.len());
            self.platform.device_write(segment.address.as_u64(), &rest[..length]);
            rest = &rest[length..];
        }
        assert!(rest.is_empty(), "the fake writes only inside the buffer");
        self.events.lock().push(NetEvent::Received { slot, length: claimed });
    }
}

impl NetworkHardware for FakeInterface {
    fn shape(&self) -> NicShape {
        NicShape {
            driver_name: "FakeInterface",
            mac: [2, 0, 0, 0, 0, 1],
            receive_depth: self.depth,
            transmit_depth: self.depth,
            header_bytes: HEADER,
            max_frame: MAX_FRAME,
            specification: Specification::UNLIMITED_64,
            platform: self.platform,
        }
    }

    fn post_receive(&self, slot: Slot, buffer: &LentTransfer<'_>) -> Result<(), IoFailure> {
        let mut receive = self.receive.lock();
        assert!(receive.iter().all(|(posted, _)| *posted != slot), "receive buffer {slot} posted twice");
        receive.push_back((slot, buffer.segments().to_vec()));
        Ok(())
    }

    fn post_transmit(&self, slot: Slot, frame: &LentTransfer<'_>, length: u64) -> Result<(), IoFailure> {
        let mut bytes = vec![0; length as usize];
        let mut at = 0;
        for segment in frame.segments() {
            let take = (segment.length as usize).min(bytes.len() - at);
            self.platform.device_read(segment.address.as_u64(), &mut bytes[at..at + take]);
            at += take;
        }
        self.sent.lock().push(bytes);
        self.events.lock().push(NetEvent::Transmitted { slot });
        Ok(())
    }

    fn collect(&self, event: &mut dyn FnMut(NetEvent)) -> DeviceHealth {
        let events = core::mem::take(&mut *self.events.lock());
        events.into_iter().for_each(event);
        DeviceHealth::Running
    }

    fn acknowledge_interrupt(&self) -> bool {
        false
    }

    fn set_interrupts(&self, _interrupts: Interrupts) -> Result<(), IoFailure> {
        Ok(())
    }

    fn quiesce(&self) -> Quiesced {
        self.receive.lock().clear();
        *self.stops.lock()
    }
}

fn frame(length: usize, seed: u64) -> Vec<u8> {
    (0..length).map(|i| (i as u64).wrapping_mul(7).wrapping_add(seed * 13) as u8).collect()
}

/// The device's header (its bytes are the device's business) and `frame`.
fn with_header(frame: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xaa; HEADER as usize];
    bytes.extend_from_slice(frame);
    bytes
}

fn poll_one(nic: &mut Nic<FakeInterface>) -> (Polled, Vec<Vec<u8>>) {
    let mut frames = Vec::new();
    let polled = nic.poll(&mut |bytes| frames.push(bytes.to_vec())).unwrap();
    (polled, frames)
}

#[test]
fn frames_are_received_through_buffers_prepared_once_and_bounced_by_synchronize() {
    let platform = SimulatedPlatform::leak(1024);
    let restrict = TransferOptions { restrict: Some(Specification::UNLIMITED_32), ..TransferOptions::default() };
    let mut nic = Nic::start(FakeInterface::new(platform, 4), &restrict).unwrap();
    assert_eq!(nic.stats().prepares, 8);
    let mut expected_copies = 0;
    for round in 0..1000u64 {
        let sent = frame(1 + (round as usize * 131) % MAX_FRAME as usize, round);
        let bytes = with_header(&sent);
        nic.hardware().deliver(&bytes, bytes.len() as u64);
        let (polled, frames) = poll_one(&mut nic);
        assert_eq!(polled.received, 1);
        assert_eq!(frames, vec![sent], "round {round}");
        expected_copies += bytes.len() as u64;
    }
    let stats = nic.stats();
    assert_eq!(stats.prepares, 8, "no prepare while running");
    assert_eq!(stats.bytes_copied_by_synchronize, expected_copies, "exactly the device's bytes, once");
    assert_eq!(stats.synchronizes, 2000);
    nic.stop().unwrap();
    assert_eq!(platform.accounting().stats().prepared_commands, 0);
}

#[test]
fn a_length_the_device_cannot_have_written_is_not_believed_and_the_buffer_goes_back() {
    let platform = SimulatedPlatform::leak(1024);
    let mut nic = Nic::start(FakeInterface::new(platform, 2), &TransferOptions::default()).unwrap();
    let bytes = with_header(&frame(100, 1));
    nic.hardware().deliver(&bytes, HEADER + MAX_FRAME + 1);
    let (polled, frames) = poll_one(&mut nic);
    assert_eq!((polled.received, polled.dropped), (0, 1));
    assert!(frames.is_empty());
    let claimed = IoFailure::new(IoReturn::Overrun, Cause::DeviceClaimedTooMuch { claimed: 1527, prepared: 1526 });
    assert_eq!(nic.stats().last_drop, Some(claimed));
    nic.hardware().deliver(&bytes, HEADER);
    let (polled, _) = poll_one(&mut nic);
    assert_eq!(polled.dropped, 1);
    let short = Cause::Net(NetCause::NoFrameAfterHeader { length: HEADER, header: HEADER });
    assert_eq!(nic.stats().last_drop.map(|failure| failure.cause()), Some(short));
    // Both buffers were posted again: the ring still takes frames.
    for _ in 0..4 {
        nic.hardware().deliver(&bytes, bytes.len() as u64);
        assert_eq!(poll_one(&mut nic).1, vec![frame(100, 1)]);
    }
    // A slot the device was not holding is refused, not completed twice.
    nic.hardware().events.lock().push(NetEvent::Received { slot: 7, length: 20 });
    assert_eq!(poll_one(&mut nic).0.dropped, 1);
    let not_posted = Cause::Net(NetCause::SlotNotPosted { slot: 7 });
    assert_eq!(nic.stats().last_drop.map(|failure| failure.cause()), Some(not_posted));
}

#[test]
fn transmit_writes_a_zeroed_header_and_the_frame_and_a_full_ring_says_busy() {
    let platform = SimulatedPlatform::leak(1024);
    let restrict = TransferOptions { restrict: Some(Specification::UNLIMITED_32), ..TransferOptions::default() };
    let mut nic = Nic::start(FakeInterface::new(platform, 2), &restrict).unwrap();
    nic.transmit(&frame(60, 1)).unwrap();
    nic.transmit(&frame(1514, 2)).unwrap();
    let full = nic.transmit(&frame(10, 3)).unwrap_err();
    assert_eq!(full, IoFailure::new(IoReturn::Busy, Cause::Net(NetCause::TransmitRingFull { depth: 2 })));
    let too_long = nic.transmit(&frame(1515, 3)).unwrap_err();
    assert_eq!(too_long.cause(), Cause::Net(NetCause::FrameLength { length: 1515, max: MAX_FRAME }));
    assert_eq!(poll_one(&mut nic).0.transmitted, 2);
    nic.transmit(&frame(10, 3)).unwrap();
    let mut expected: Vec<Vec<u8>> =
        [frame(60, 1), frame(1514, 2), frame(10, 3)].iter().map(|f| with_header(f)).collect();
    expected.iter_mut().for_each(|bytes| bytes[..HEADER as usize].fill(0));
    assert_eq!(*nic.hardware().sent.lock(), expected);
    let stats = nic.stats();
    assert_eq!(stats.bytes_copied_by_synchronize, expected.iter().map(|bytes| bytes.len() as u64).sum::<u64>());
    assert_eq!((stats.packets_transmitted, stats.prepares), (2, 4));
}

#[test]
fn a_device_that_will_not_stop_keeps_every_buffer() {
    let platform = SimulatedPlatform::leak(1024);
    let fake = FakeInterface::new(platform, 2);
    let still = IoFailure::new(IoReturn::IoError, Cause::DeviceWouldNotStop);
    *fake.stops.lock() = Quiesced::StillRunning(still);
    let mut nic = Nic::start(fake, &TransferOptions::default()).unwrap();
    let free = platform.free_frames_count();
    assert_eq!(nic.stop(), Err(still));
    assert_eq!(platform.free_frames_count(), free, "nothing freed under a running device");
    assert_eq!(platform.accounting().stats().leaked_transfers, 4);
    assert_eq!(nic.poll(&mut |_| {}).unwrap_err().cause(), Cause::DriverStopped);
}
