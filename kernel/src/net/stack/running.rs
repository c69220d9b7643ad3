//! The kernel's one network stack: started on the first interface at boot,
//! polled from the shell's idle loop, its time the timer's ticks.

use alloc::string::String;

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::service::{Address, NetService, ServiceStats};
use crate::arch::pic;
use crate::net::registry;

static SERVICE: Mutex<Option<NetService>> = Mutex::new(None);
/// Nanoseconds the shell slept in `hlt` while serving the network, and when
/// the stack started: how busy the CPU is while it serves.
static SLEPT_NS: AtomicU64 = AtomicU64::new(0);
static STARTED: Mutex<Option<crate::clock::Instant>> = Mutex::new(None);
static REPORT: Mutex<Option<fn() -> String>> = Mutex::new(None);
/// The stack's counters as of its last poll: what `stats` reads, so that the
/// report written *during* a poll (port 11) does not wait for the lock the
/// poll holds (one CPU: it would wait for ever).
static LAST_STATS: Mutex<Option<(Address, String, ServiceStats)>> = Mutex::new(None);

fn now_ms() -> i64 {
    (pic::ticks() * 1000 / u64::from(pic::TIMER_HZ)) as i64
}

/// Starts the stack on the first interface, if there is one, at QEMU's
/// user-mode address; `report` writes the text of port 11. Returns where it
/// listens, or `None` without an interface.
pub fn start(report: fn() -> String) -> Option<Address> {
    let interface = registry::all().into_iter().next()?;
    let service = NetService::new(interface, Address::QEMU_USER, now_ms());
    let address = service.address();
    *LAST_STATS.lock() = Some((address, String::from(service.interface().name()), service.stats()));
    *REPORT.lock() = Some(report);
    *SERVICE.lock() = Some(service);
    *STARTED.lock() = Some(crate::clock::Instant::now());
    Some(address)
}

/// Serves what arrived. Returns whether anything moved.
pub fn poll() -> bool {
    let report = (*REPORT.lock()).unwrap_or(String::new);
    // The network news is taken before the poll: an interrupt after it leaves
    // news for the caller's check before it sleeps.
    registry::take_news();
    let mut service = SERVICE.lock();
    let Some(service) = service.as_mut() else { return false };
    let moved = service.poll(now_ms(), &report);
    if moved && let Some((_, _, stats)) = LAST_STATS.lock().as_mut() {
        *stats = service.stats();
    }
    moved
}

/// What the stack did (as of its last poll), and where it sits, on which
/// interface; `None` when it was not started.
pub fn stats() -> Option<(Address, String, ServiceStats)> {
    LAST_STATS.lock().clone()
}

/// Runs `sleep` (the shell's `sti; hlt`) and, once the stack runs, adds the
/// time it took to the time slept. Without a stack nothing is timed: the
/// clock's first use calibrates against the timer, which must not happen here
/// with interrupts off (a `hlt` that nothing wakes).
pub fn sleep(sleep: fn()) {
    let started = STARTED.lock().is_some();
    match started {
        true => {
            let asleep = crate::clock::Instant::now();
            sleep();
            SLEPT_NS.fetch_add(asleep.elapsed_ns(), Ordering::Relaxed);
        }
        false => sleep(),
    }
}

/// Nanoseconds since the stack started, and of those asleep; `None` when it
/// was not started.
pub fn sleep_share() -> Option<(u64, u64)> {
    let started = (*STARTED.lock())?;
    Some((started.elapsed_ns(), SLEPT_NS.load(Ordering::Relaxed)))
}
