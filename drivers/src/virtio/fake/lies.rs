//! What a hostile fake device can do to a used ring besides giving back the
//! chains it ran: publish any elements it likes (ids and lengths it makes up,
//! copies, elements for chains never made available) and move the used index
//! past slots it never wrote. The hostile-device property tests script these.
//!
//! Whatever element the driver may believe from that moment names a chain
//! the device gave back, so the fake forgets (never touches again) every
//! chain it held that such an element names: a lie the driver cannot see
//! through never turns into a write into memory it got back. Elements no
//! driver may believe (a used index ahead of every chain made available)
//! leave the device holding its chains, so a driver that believed them
//! would hand back buffers the device still writes. Every byte the device still moves
//! goes through the chains it holds, inside its fence
//! ([`super::DeviceMemory::fence_writes`]).

use super::rings::{Chain, QueueAccess};

impl QueueAccess<'_> {
    /// Puts `elements` on the used ring, moves the used index `skipped`
    /// slots further (past whatever those slots hold from an earlier lap),
    /// publishes the index and raises the interrupt. If the driver may
    /// believe what it now reads, the device forgets each held chain an
    /// element there names; if not (see [`QueueAccess::ahead_of_the_driver`])
    /// it goes on holding them, as a device that replays stale elements
    /// while it still works on their chains.
    pub fn publish(&mut self, elements: &[(u32, u32)], skipped: u16) {
        self.put_elements(elements);
        self.state.used_index = self.state.used_index.wrapping_add(skipped);
        self.publish_used_index();
        if self.ahead_of_the_driver() {
            return;
        }
        // The driver reads at most as many elements as it has chains in
        // flight, at most the ring's size, ending at the index: any slot of
        // the ring may hold one.
        if self.state.held.is_empty() {
            return;
        }
        let ids = self.used_ids();
        self.state.held.retain(|chain| !ids.contains(&u32::from(chain.head)));
    }

    /// Whether the used index runs ahead of every chain the driver made
    /// available, however many elements it has read: then the index moved
    /// past more elements than it has chains in flight (at most the ring's
    /// size), which a driver must refuse (virtio-blk's and virtio-net's
    /// `UsedIndexAhead`), believing none of them.
    fn ahead_of_the_driver(&self) -> bool {
        let Some(ring) = self.state.ring else { return false };
        let available = self.memory.read_u16(ring.available_index());
        let ahead = self.state.used_index.wrapping_sub(available);
        // Modulo 2^16, as the driver counts: from 1 to 65535 - size ahead
        // is ahead of any count of chains in flight; further is behind.
        ahead != 0 && ahead <= u16::MAX - ring.size
    }

    /// Takes the held chain at `pick` (modulo how many it holds, oldest
    /// first) away from the device's work: it will never run. `None` when it
    /// holds none.
    pub fn take_held(&mut self, pick: usize) -> Option<Chain> {
        let held = self.state.held.len();
        if held == 0 {
            return None;
        }
        self.state.held.remove(pick % held)
    }
}
