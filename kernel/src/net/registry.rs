//! The kernel's network interfaces, by name (`net0`, `net1`, ...): what a
//! driver started, for the shell, the network stack and the tests to find.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Mutex;

use super::{Interrupts, NetworkHardware, Nic, NicStats, Polled};
use crate::dma::IoFailure;

/// A started interface, whatever its driver: a `Nic` behind a lock.
pub trait NetInterface: Send + Sync {
    /// Its name (`net0`).
    fn name(&self) -> &str;
    /// Its MAC address.
    fn mac(&self) -> [u8; 6];
    /// Collects what the device finished, handing each received frame to `deliver`.
    fn poll(&self, deliver: &mut dyn FnMut(&[u8])) -> Result<Polled, IoFailure>;
    /// Sends one Ethernet frame.
    fn transmit(&self, frame: &[u8]) -> Result<(), IoFailure>;
    /// Transmit buffers free for a frame now.
    fn transmit_free(&self) -> usize;
    /// Its counters.
    fn stats(&self) -> NicStats;
    /// In the interrupt handler: quiets the device (no lock taken) and, if the
    /// interrupt was its, counts it and leaves news for [`take_news`].
    fn interrupt(&self);
    /// Interrupts the device raised, and whether it is asked to raise them.
    fn interrupts(&self) -> (u64, Interrupts);
    /// Asks the device to interrupt, or not, when it gives buffers back.
    fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure>;
}

/// A `Nic` with its name, behind a lock that the shell, the network stack and
/// the tests share; the interrupt handler takes no lock (on one CPU the
/// interrupted code may be holding it) and only reaches the driver's
/// acknowledge.
pub struct LockedNic<H: NetworkHardware> {
    name: String,
    nic: Mutex<Nic<H>>,
    interrupt_side: Arc<H>,
    interrupts: AtomicU64,
    wanted: AtomicBool,
}

impl<H: NetworkHardware> LockedNic<H> {
    /// `nic`, called `name`.
    pub fn new(name: String, nic: Nic<H>) -> LockedNic<H> {
        let interrupt_side = nic.shared_hardware();
        LockedNic {
            name,
            nic: Mutex::new(nic),
            interrupt_side,
            interrupts: AtomicU64::new(0),
            wanted: AtomicBool::new(false),
        }
    }
}

impl<H: NetworkHardware> NetInterface for LockedNic<H> {
    fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self) -> [u8; 6] {
        self.nic.lock().mac()
    }

    fn poll(&self, deliver: &mut dyn FnMut(&[u8])) -> Result<Polled, IoFailure> {
        self.nic.lock().poll(deliver)
    }

    fn transmit(&self, frame: &[u8]) -> Result<(), IoFailure> {
        self.nic.lock().transmit(frame)
    }

    fn transmit_free(&self) -> usize {
        self.nic.lock().transmit_free()
    }

    fn stats(&self) -> NicStats {
        self.nic.lock().stats()
    }

    fn interrupt(&self) {
        if self.interrupt_side.acknowledge_interrupt() {
            self.interrupts.fetch_add(1, Ordering::Relaxed);
            NEWS.store(true, Ordering::Release);
        }
    }

    fn interrupts(&self) -> (u64, Interrupts) {
        let wanted = match self.wanted.load(Ordering::Relaxed) {
            true => Interrupts::Wanted,
            false => Interrupts::Suppressed,
        };
        (self.interrupts.load(Ordering::Relaxed), wanted)
    }

    fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure> {
        self.nic.lock().set_interrupts(interrupts)?;
        self.wanted.store(interrupts == Interrupts::Wanted, Ordering::Relaxed);
        Ok(())
    }
}

static INTERFACES: Mutex<Vec<Arc<dyn NetInterface>>> = Mutex::new(Vec::new());

/// Set by an interface's interrupt, taken by whoever polls: lets a CPU about
/// to sleep see that a device had news after its last poll.
static NEWS: AtomicBool = AtomicBool::new(false);

/// Whether some interface interrupted since the last call (and forgets it).
pub fn take_news() -> bool {
    NEWS.swap(false, Ordering::Acquire)
}

/// Whether some interface interrupted since the last [`take_news`], without
/// forgetting it.
pub fn has_news() -> bool {
    NEWS.load(Ordering::Acquire)
}

/// The name the next interface gets: `net` and its number.
pub fn next_name() -> String {
    alloc::format!("net{}", INTERFACES.lock().len())
}

/// Adds a started interface.
pub fn register(interface: Arc<dyn NetInterface>) {
    INTERFACES.lock().push(interface);
}

/// The interface called `name`.
pub fn find(name: &str) -> Option<Arc<dyn NetInterface>> {
    INTERFACES.lock().iter().find(|interface| interface.name() == name).cloned()
}

/// Every interface, in the order they started.
pub fn all() -> Vec<Arc<dyn NetInterface>> {
    INTERFACES.lock().clone()
}
