//! The interrupt side of a [`LockedNic`]: on one CPU the handler interrupts
//! whatever holds the Nic's lock (the stack in the middle of a poll), so it
//! must do its work without that lock, and still count the interrupt and
//! leave news for the idle loop.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use spin::Mutex;

use super::registry::{LockedNic, NetInterface, take_news};
use super::*;
use crate::dma::simulated::SimulatedPlatform;
use crate::dma::{IoFailure, LentTransfer, Specification, TransferOptions};

/// What the test and the fake device share.
#[derive(Default)]
struct Line {
    /// The device's interrupt is raised (its ISR bit set).
    raised: AtomicBool,
    /// Receive slots posted, oldest first.
    posted: Mutex<Vec<Slot>>,
    /// What `collect` reports next.
    events: Mutex<Vec<NetEvent>>,
}

/// A device that receives a frame into its oldest receive buffer when told,
/// and raises its interrupt; reading the interrupt lowers it.
struct Interrupting {
    platform: &'static SimulatedPlatform,
    line: Arc<Line>,
}

impl Line {
    /// A 60-byte frame (after a 12-byte header) into the oldest posted buffer,
    /// and the interrupt raised.
    fn receive(&self) {
        let slot = self.posted.lock().remove(0);
        self.events.lock().push(NetEvent::Received { slot, length: 72 });
        self.raised.store(true, Ordering::SeqCst);
    }
}

impl NetworkHardware for Interrupting {
    fn shape(&self) -> NicShape {
        NicShape {
            driver_name: "Interrupting",
            mac: [2, 0, 0, 0, 0, 9],
            receive_depth: 2,
            transmit_depth: 1,
            header_bytes: 12,
            max_frame: 1514,
            specification: Specification::UNLIMITED_64,
            platform: self.platform,
        }
    }

    fn post_receive(&self, slot: Slot, _buffer: &LentTransfer<'_>) -> Result<(), IoFailure> {
        self.line.posted.lock().push(slot);
        Ok(())
    }

    fn post_transmit(&self, slot: Slot, _frame: &LentTransfer<'_>, _length: u64) -> Result<(), IoFailure> {
        self.line.events.lock().push(NetEvent::Transmitted { slot });
        Ok(())
    }

    fn collect(&self, event: &mut dyn FnMut(NetEvent)) -> DeviceHealth {
        let events = core::mem::take(&mut *self.line.events.lock());
        events.into_iter().for_each(event);
        DeviceHealth::Running
    }

    fn set_interrupts(&self, _interrupts: Interrupts) -> Result<(), IoFailure> {
        Ok(())
    }

    /// Reading the interrupt status lowers it, as virtio's ISR does.
    fn acknowledge_interrupt(&self) -> bool {
        self.line.raised.swap(false, Ordering::SeqCst)
    }

    fn quiesce(&self) -> Quiesced {
        self.line.posted.lock().clear();
        Quiesced::Stopped
    }
}

#[test]
fn an_interrupt_while_the_nic_is_locked_is_counted_and_leaves_news_without_waiting_for_the_lock() {
    let platform = SimulatedPlatform::leak(256);
    let line = Arc::new(Line::default());
    let nic = Nic::start(Interrupting { platform, line: line.clone() }, &TransferOptions::default()).unwrap();
    let interface = Arc::new(LockedNic::new(String::from("net9"), nic));
    interface.set_interrupts(Interrupts::Wanted).unwrap();
    line.receive();
    take_news();
    let (done, finished) = mpsc::channel();
    let polling = interface.clone();
    // On its own thread, so that a handler waiting for the lock fails the
    // test by a timeout instead of hanging it (a spin lock never gives up).
    std::thread::spawn(move || {
        let mut news_inside = false;
        let polled = polling.poll(&mut |_frame| {
            // The handler, as the device's interrupt runs it in the middle of
            // the stack's poll, which holds the Nic's lock.
            line.receive();
            polling.interrupt();
            news_inside = super::registry::has_news();
        });
        let _ = done.send((polled, news_inside));
    });
    let (polled, news_inside) = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the interrupt handler, run while the Nic's lock was held, did not return within 10 s");
    assert_eq!(polled.unwrap().received, 1);
    assert!(news_inside, "the handler left news at once");
    assert_eq!(interface.interrupts(), (1, Interrupts::Wanted), "the interrupt was counted");
    assert!(take_news(), "the idle loop finds the news");
    // The handler acknowledged: the device's interrupt is down, and a second
    // call (a shared line's other device interrupting) counts nothing.
    interface.interrupt();
    assert_eq!(interface.interrupts().0, 1, "a handler run for another device's interrupt counts nothing");
    assert!(!take_news(), "and leaves no news");
    // The frame the device received during the poll is there for the next one.
    assert_eq!(interface.poll(&mut |_| {}).unwrap().received, 1);
}
