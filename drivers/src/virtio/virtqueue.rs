//! A split virtqueue in memory shared with the device: the driver's side of
//! the descriptor table, the available ring and the used ring. It knows chains
//! of descriptors and the ids the device hands back, nothing about what a
//! request means (a block request, a network frame): the device layer above
//! decides that.
//!
//! Ordering (virtio 1.0, 2.4.7 and 2.4.8): the descriptors and the ring slot are
//! written before the available index that publishes them; a used element is
//! read only after the used index that publishes it. The fences say so to the
//! compiler and the CPU.

use core::sync::atomic::{Ordering, fence};

use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::{Cause, CoherentMemory, DmaAddr, DmaPlatform, IoFailure, IoReturn, Specification, VirtioCause};
use dmakit::net::Interrupts;

use super::queue::{DESCRIPTOR_NEXT, QueueLayout, VirtqDescriptor};
use super::registers::QUEUE_ALIGNMENT;
use super::transport::{Interface, QueueAreas};

/// One element of the used ring (`struct virtq_used_elem`): which chain the
/// device finished, and how many bytes it wrote into its device-writable buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElement {
    /// The head descriptor of the chain.
    pub id: u32,
    /// Bytes the device wrote.
    pub length: u32,
}

/// Who a descriptor table entry belongs to, as the driver made its chains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// The driver's: no chain the device holds uses it.
    Driver,
    /// The head of a chain of `length` entries the device holds: the only id
    /// a used element may name.
    Head { length: u16 },
    /// Inside a chain the device holds, not its head.
    Linked,
}

/// A queue and the driver's place in it.
pub struct Virtqueue {
    /// Its index on the device (for the causes a lying device gets).
    queue: u16,
    layout: QueueLayout,
    /// Shared with the device from the moment its address is written.
    ring: CoherentMemory,
    /// Where the device sees the ring.
    address: DmaAddr,
    available_index: u16,
    used_index: u16,
    /// Each table entry's owner.
    entries: Vec<Entry>,
    /// Chains the device holds: made available, not yet seen used.
    in_flight: u16,
}

impl Virtqueue {
    /// Queue `queue`, of `size` entries, in memory `interface`'s device can
    /// address on `platform`.
    pub fn allocate(
        platform: &'static dyn DmaPlatform,
        queue: u16,
        size: u16,
        interface: Interface,
    ) -> Result<Self, IoFailure> {
        let layout = QueueLayout::new(size);
        let specification = Specification {
            num_address_bits: interface.queue_address_bits(),
            alignment: QUEUE_ALIGNMENT,
            ..Specification::UNLIMITED_64
        };
        let ring = CoherentMemory::allocate(platform, layout.total, specification)?;
        let address = ring.device_address();
        let entries = vec![Entry::Driver; usize::from(size)];
        Ok(Virtqueue { queue, layout, ring, address, available_index: 0, used_index: 0, entries, in_flight: 0 })
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Where the device finds the three parts.
    pub fn areas(&self) -> QueueAreas {
        self.layout.areas(self.address)
    }

    /// The device address of the queue memory.
    pub fn address(&self) -> DmaAddr {
        self.address
    }

    /// Asks the device to interrupt when it uses a chain, or not to (a driver
    /// that polls the used ring, or has no handler to quiet it yet).
    pub fn set_interrupts(&self, interrupts: Interrupts) -> Result<(), IoFailure> {
        // VIRTQ_AVAIL_F_NO_INTERRUPT (virtio 1.0, 2.4.7): a hint the device may
        // ignore, which QEMU honours without VIRTIO_F_EVENT_IDX.
        let flags: u16 = match interrupts {
            Interrupts::Wanted => 0,
            Interrupts::Suppressed => 1,
        };
        self.ring.write_bytes(self.layout.available, &flags.to_le_bytes()).map(|_| ())
    }

    /// Writes `descriptors` as one chain starting at table entry `head`, each
    /// linked to the next entry (`NEXT`; the last ends it), and makes it
    /// available to the device. An error leaves it unpublished: the device
    /// never saw it.
    ///
    /// Where things lie (virtio 1.0, 2.4.5 and 2.4.6): descriptor `i` at `16 * i`;
    /// the available ring `{flags: u16, idx: u16, ring: [u16; size]}` at
    /// `layout.available`.
    pub fn add_chain(&mut self, head: u16, descriptors: &[VirtqDescriptor]) -> Result<(), IoFailure> {
        let size = self.layout.size;
        let chain = usize::from(head)..usize::from(head) + descriptors.len();
        if chain.end > usize::from(size) || descriptors.is_empty() {
            let cause = Cause::Virtio(VirtioCause::ChainOutsideTable { head, length: descriptors.len(), size });
            return Err(IoFailure::new(IoReturn::BadArgument, cause));
        }
        // The caller's slot is free, so its entries are: a chain over one the
        // device holds would be a driver bug that lets one used element end two.
        if self.entries[chain.clone()].iter().any(|entry| *entry != Entry::Driver) {
            return Err(IoFailure::new(IoReturn::Busy, Cause::DeviceOwnsMemory));
        }
        // The chain is consecutive entries: one write of all of them.
        let mut table = Vec::with_capacity(16 * descriptors.len());
        for (index, descriptor) in descriptors.iter().enumerate() {
            let mut descriptor = *descriptor;
            if index + 1 < descriptors.len() {
                descriptor.flags |= DESCRIPTOR_NEXT;
                // Below the table's size (checked above), which is a u16.
                descriptor.next = head + index as u16 + 1;
            }
            table.extend_from_slice(&descriptor.to_bytes());
        }
        self.ring.write_bytes(16 * u64::from(head), &table)?;
        let slot = self.layout.available + 4 + 2 * u64::from(self.available_index % size);
        self.ring.write_bytes(slot, &head.to_le_bytes())?;
        // The device must see the descriptors and the slot before the new index.
        fence(Ordering::SeqCst);
        let next = self.available_index.wrapping_add(1);
        self.ring.write_bytes(self.layout.available + 2, &next.to_le_bytes())?;
        self.available_index = next;
        fence(Ordering::SeqCst);
        // At most one chain per entry: the count stays below the size (a u16).
        self.entries[chain.clone()].fill(Entry::Linked);
        self.entries[chain.start] = Entry::Head { length: descriptors.len() as u16 };
        self.in_flight += 1;
        Ok(())
    }

    /// Whether the device wants to be notified of the chains made available:
    /// not while it sets `VIRTQ_USED_F_NO_NOTIFY` in the used ring's flags
    /// (virtio 1.0, 2.4.7.2; without `VIRTIO_F_EVENT_IDX`), which QEMU does
    /// while it will look at the ring by itself. A hint: read after the new
    /// available index is published (`add_chain` ends with a full fence), so
    /// a device that clears it afterwards sees the chain when it looks again.
    pub fn device_wants_notification(&self) -> Result<bool, IoFailure> {
        let mut flags = [0u8; 2];
        self.ring.read_bytes(self.layout.used, &mut flags)?;
        Ok(u16::from_le_bytes(flags) & USED_NO_NOTIFY == 0)
    }

    /// The next element the device added to the used ring since the last look,
    /// if any. The used ring `{flags: u16, idx: u16, ring: [{id: u32, len:
    /// u32}; size]}` lies at `layout.used`.
    ///
    /// The device is not trusted (`IoError`, and the device must be stopped):
    /// its used index may move past no more elements than there are chains in
    /// flight (`UsedIndexAhead`: checked before any element is read, so a
    /// stale element from an earlier lap never ends a live chain), and an
    /// element must name the head of a chain it holds (`UsedIdNotAHead`,
    /// `UsedIdNotInFlight`), so that no chain ends twice.
    pub fn pop_used(&mut self) -> Result<Option<UsedElement>, IoFailure> {
        let queue = self.queue;
        let broken = |cause| Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(cause)));
        let mut index = [0u8; 2];
        self.ring.read_bytes(self.layout.used + 2, &mut index)?;
        let index = u16::from_le_bytes(index);
        // Modulo 2^16, as the index itself wraps.
        let advance = index.wrapping_sub(self.used_index);
        if advance == 0 {
            return Ok(None);
        }
        if advance > self.in_flight {
            let (last_seen, in_flight) = (self.used_index, self.in_flight);
            return broken(VirtioCause::UsedIndexAhead { queue, index, last_seen, in_flight });
        }
        // An element is valid only once the index that publishes it was seen.
        fence(Ordering::SeqCst);
        let mut element = [0u8; 8];
        let slot = self.layout.used + 4 + 8 * u64::from(self.used_index % self.layout.size);
        self.ring.read_bytes(slot, &mut element)?;
        self.used_index = self.used_index.wrapping_add(1);
        let (fields, _) = element.as_chunks::<4>();
        let element = UsedElement { id: u32::from_le_bytes(fields[0]), length: u32::from_le_bytes(fields[1]) };
        let id = element.id;
        let head = usize::try_from(id).ok().filter(|&head| head < self.entries.len());
        match head.map(|head| (head, self.entries[head])) {
            Some((head, Entry::Head { length })) => {
                self.entries[head..head + usize::from(length)].fill(Entry::Driver);
                self.in_flight -= 1;
                Ok(Some(element))
            }
            Some((_, Entry::Driver)) => broken(VirtioCause::UsedIdNotInFlight { queue, id }),
            Some((_, Entry::Linked)) | None => broken(VirtioCause::UsedIdNotAHead { queue, id }),
        }
    }

    /// Gives the ring back once the device was told to forget it: freed if the
    /// reset was confirmed; otherwise the device may still use it, so it is
    /// leaked (dropped unreleased, which the DMA layer reports), never freed.
    pub fn release_after(self, reset: &Result<(), IoFailure>) {
        release_after(self.ring, reset, "queue");
    }
}

/// `VIRTQ_USED_F_NO_NOTIFY`: bit 0 of the used ring's flags.
const USED_NO_NOTIFY: u16 = 1;

/// Gives memory the device was told about back after a reset: freed if the
/// reset was confirmed, leaked (never reused) if not.
pub fn release_after(memory: CoherentMemory, reset: &Result<(), IoFailure>, what: &str) {
    match reset {
        Ok(()) => {
            if let Err(failure) = memory.release() {
                log::error!("virtio: {what} memory not released: {failure}");
            }
        }
        Err(failure) => {
            log::error!("virtio: {failure}; the {what} memory is leaked, not freed under the device");
            drop(memory);
        }
    }
}
