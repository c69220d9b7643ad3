//! The kernel's network interfaces, by name (`net0`, `net1`, ...): what a
//! driver started, for the shell and the tests to find.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use super::{NetworkHardware, Nic, NicStats, Polled};
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
    /// Its counters.
    fn stats(&self) -> NicStats;
}

/// A `Nic` with its name, behind a lock: the shell, tests and (later) the
/// interrupt path share it.
pub struct LockedNic<H: NetworkHardware> {
    name: String,
    nic: Mutex<Nic<H>>,
}

impl<H: NetworkHardware> LockedNic<H> {
    /// `nic`, called `name`.
    pub fn new(name: String, nic: Nic<H>) -> LockedNic<H> {
        LockedNic { name, nic: Mutex::new(nic) }
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

    fn stats(&self) -> NicStats {
        self.nic.lock().stats()
    }
}

static INTERFACES: Mutex<Vec<Arc<dyn NetInterface>>> = Mutex::new(Vec::new());

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
