//! virtio-blk against a device that lies on the used ring: an index ahead of
//! the chains in flight, stale elements naming chains it still holds, a used
//! length above what the chain lets it write. No request may end early or
//! twice, no buffer may go back while the device holds it, and no lie is
//! taken for a success.

use super::*;

on_both_transports!(
    a_used_index_ahead_of_the_chains_in_flight_stops_the_device_before_any_buffer_goes_back,
    a_used_length_above_the_chain_fails_its_request_and_the_device_goes_on,
);

fn a_used_index_ahead_of_the_chains_in_flight_stops_the_device_before_any_buffer_goes_back(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    // Bounce memory: a request ended early would free pages the device still
    // writes into, which the fake asserts against.
    disk.set_double_buffering(DoubleBuffering::Forced);
    let queue_address = disk.hardware().queue_address().unwrap();
    fake.set_answer(Answer::Held);
    let planned = plan(5, 3, 8);
    let handles: Vec<_> = planned.iter().map(|planned| submit(&disk, platform, planned)).collect();
    assert_eq!(fake.held(), 3);
    // The device runs the oldest chain, and publishes it, itself again and
    // the two chains it still holds: 4 elements for 3 chains in flight.
    *fake.misreport.lock() = Misreport::StaleReplay;
    assert_eq!(fake.finish_held(FinishOrder::OldestOnly), 1);
    assert_eq!(fake.held(), 2);
    let ahead = VirtioCause::UsedIndexAhead { queue: 0, index: 4, last_seen: 0, in_flight: 3 };
    let failure = IoFailure::new(IoReturn::IoError, Cause::Virtio(ahead));
    // The newest first: those the device still holds must not have ended.
    for handle in handles.into_iter().rev() {
        let Finished { buffer, result } = disk.wait(handle);
        assert_eq!(result, Err(failure), "no element of that used ring is believed");
        assert!(buffer.is_some(), "the reset was confirmed: the buffer comes back, once");
    }
    let reset = *fake.resets.lock().last().unwrap();
    let expected =
        Reset { queue_address, queue_memory_allocated: true, chains_forgotten: 2, chain_memory_allocated: true };
    assert_eq!(reset, expected, "the device was reset before any of its memory was freed");
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
    // A device that tells the truth again is started again.
    *fake.misreport.lock() = Misreport::Honest;
    fake.set_answer(Answer::AtNotify);
    disk.start().unwrap();
    let mut target = buffer(platform, 8 * 512, IoDirection::In);
    disk.read(5, 8, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 8 * 512).unwrap(), sectors(5, 8));
}

/// The hostile-device property test's first find: a one-sector read whose
/// element said 514 bytes for a chain of 513 writable ones (512 of data, the
/// status byte) was cut down to the 512 prepared and reported a success.
fn a_used_length_above_the_chain_fails_its_request_and_the_device_goes_on(interface: Interface) {
    let (platform, fake, disk) = setup(Medium::Writable, interface);
    let resets = fake.resets.lock().len();
    *fake.misreport.lock() = Misreport::LengthAbovePrepared;
    let mut target = buffer(platform, 512, IoDirection::In);
    let above = |length, writable| {
        let cause = VirtioCause::UsedLengthAboveChain { queue: 0, length, writable };
        Err(IoFailure::new(IoReturn::Overrun, Cause::Virtio(cause)))
    };
    assert_eq!(disk.read(3, 1, &mut target, 0), above(513 + 4096, 513), "a read's data and status byte");
    let mut source = buffer(platform, 512, IoDirection::Out);
    source.write_bytes(0, &sectors(3, 1)).unwrap();
    assert_eq!(disk.write(3, 1, &mut source, 0), above(1 + 4096, 1), "a write's status byte only");
    assert_eq!(fake.resets.lock().len(), resets, "the ring's ids held: the device was not reset");
    *fake.misreport.lock() = Misreport::Honest;
    disk.read(3, 1, &mut target, 0).unwrap();
    assert_eq!(target.to_vec(0, 512).unwrap(), sectors(3, 1));
    assert!(platform.accounting().misuse_log().is_empty(), "{:?}", platform.accounting().misuse_log());
}
