//! The virtio-blk personality of the register fake ([`FakeVirtio`]): a disk
//! image in memory behind queue 0. It moves data only through the addresses
//! in the descriptors, in simulated physical memory, like the real device.
//!
//! It answers at once (inside the notify) by default; in [`Answer::Held`]
//! mode a notify only takes the new chains off the available ring, and
//! [`FakeVirtio::finish_held`] runs them later, in the order the test chooses
//! (so requests finish out of order, as on a real device), unless the driver
//! reset the device in between (a reset makes a device forget its queue and
//! everything on it). It can also misreport a chain it ran ([`Misreport`]).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::simulated::SimulatedPlatform;
use spin::Mutex;

use super::super::queue::{DESCRIPTOR_WRITE, VirtqDescriptor};
use super::super::registers::*;
use super::super::transport::Interface;
use super::device::{FakeDevice, Personality};
use super::rings::{Chain, DeviceMemory, QueueAccess};

/// Bytes of the modern device configuration (virtio-blk's, as QEMU sizes it).
pub const DEVICE_CONFIG_BYTES: u32 = 0x3c;

/// The fake virtio-blk device on either register layout.
pub type FakeVirtio = FakeDevice<FakeDisk>;

/// Whether the fake disk takes writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Medium {
    /// Reads and writes.
    Writable,
    /// Offers `VIRTIO_BLK_F_RO`.
    ReadOnly,
}

/// When the fake runs the chains a notify makes available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Inside the notify, in the order the driver made them available.
    AtNotify,
    /// When the test calls [`FakeVirtio::finish_held`].
    Held,
}

/// In which order [`FakeVirtio::finish_held`] runs the chains it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishOrder {
    /// The order the driver made them available.
    AsTaken,
    /// The newest first: each request finishes before those made available
    /// earlier.
    Reverse,
    /// Only the oldest; the rest stay held.
    OldestOnly,
}

/// What the fake says about a chain it ran, on the used ring and in the
/// status byte: a device is not trusted, so the driver must not believe a
/// wrong answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misreport {
    /// The truth.
    Honest,
    /// A used length 4096 bytes above what it wrote.
    LengthAbovePrepared,
    /// Leaves the status byte alone, and the used length says it wrote it.
    StatusUnwritten,
    /// The id of the descriptor after the chain's head, which heads no chain.
    IdOfNoChain,
    /// The chain's element twice on the used ring.
    ChainTwice,
    /// The chain's element, then stale copies (its own again, and one naming
    /// each chain the device still holds and has not run), all published by
    /// one used index: an index ahead of the chains the driver has in flight.
    StaleReplay,
}

/// What the device writes into a request's status byte when it runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusByte {
    /// What the request earned: OK, IOERR, UNSUPP.
    AsRun,
    /// Nothing: the byte keeps whatever the driver put there.
    Unwritten,
    /// This byte, whatever the request earned (a lie when it is not the
    /// earned one, garbage when it is no status at all).
    Written(u8),
}

/// What [`FakeVirtio::end_held`] does with a held chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldWork {
    /// Runs it, ending with this status byte.
    Run(StatusByte),
    /// Drops it unrun: no byte moves, the status byte keeps the driver's.
    Skip,
}

/// A chain [`FakeVirtio::end_held`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunChain {
    /// Its head: the id an honest element gives back.
    pub head: u16,
    /// Bytes the device wrote into it (the status byte counted; 0 when it
    /// did not run): an honest used length.
    pub written: u32,
    /// Its device-writable bytes: no used length may say more.
    pub writable: u64,
    /// The address of its second descriptor (the first data one, or the
    /// status of a chain without data), which names the request it carried.
    pub first_data: u64,
}

/// virtio-blk's side of the fake.
pub struct FakeDisk {
    /// The disk image.
    pub disk: Mutex<Vec<u8>>,
    /// Sectors that fail with an I/O error.
    pub bad_sector: Option<u64>,
    /// `seg_max` in the configuration (0 is a broken device).
    pub seg_max: u32,
    /// The capacity (sectors) the configuration says; `None`: the image's.
    pub capacity: Option<u64>,
    /// Most data bytes a read writes: the device stops early, still reports OK,
    /// and its used element counts only the bytes it wrote.
    pub read_limit: Option<u64>,
    /// When chains run (see [`FakeVirtio::set_answer`]).
    answer: Mutex<Answer>,
    /// What it says about each chain it runs.
    pub misreport: Mutex<Misreport>,
    /// Largest chain seen (descriptors).
    pub longest_chain: Mutex<usize>,
    /// Every flush request it ran: (sector in its header, descriptors in its chain).
    pub flushes: Mutex<Vec<(u64, usize)>>,
    /// The status byte a flush ends with when `VIRTIO_BLK_F_FLUSH` was
    /// negotiated (without it, `UNSUPP`, as for any type it does not take).
    pub flush_status: u8,
}

impl FakeVirtio {
    /// A fake disk holding `contents`, with the registers of `interface` and
    /// one 256-entry queue, as QEMU's. A modern one offers `VERSION_1` and
    /// `ACCESS_PLATFORM` too, and notifies queue 0 at 3 * 4 bytes into its
    /// notify structure.
    pub fn new(
        platform: &'static SimulatedPlatform,
        contents: Vec<u8>,
        medium: Medium,
        interface: Interface,
    ) -> Arc<FakeVirtio> {
        let read_only = match medium {
            Medium::Writable => 0,
            Medium::ReadOnly => FEATURE_READ_ONLY,
        };
        let disk = FakeDisk {
            disk: Mutex::new(contents),
            bad_sector: None,
            seg_max: 16,
            capacity: None,
            read_limit: None,
            answer: Mutex::new(Answer::AtNotify),
            misreport: Mutex::new(Misreport::Honest),
            longest_chain: Mutex::new(0),
            flushes: Mutex::new(Vec::new()),
            flush_status: STATUS_OK,
        };
        Arc::new(FakeDevice::with_personality(platform, interface, FEATURE_SEG_MAX | read_only | 1 << 28, disk))
    }

    /// The size of the queue in use (0: none).
    pub fn queue_size(&self) -> u16 {
        self.ring(0).map_or(0, |ring| ring.size)
    }

    /// From now on, runs chains as `answer` says (chains held already stay
    /// held until [`FakeVirtio::finish_held`]).
    pub fn set_answer(&self, answer: Answer) {
        *self.answer.lock() = answer;
    }

    /// Runs the chains held notifies took, in `order`, unless a reset made the
    /// device forget them; returns how many ran.
    pub fn finish_held(&self, order: FinishOrder) -> usize {
        self.with_queue(0, |queue| {
            let mut chains: Vec<Chain> = match order {
                FinishOrder::OldestOnly => queue.state.held.pop_front().into_iter().collect(),
                _ => queue.state.held.drain(..).collect(),
            };
            if order == FinishOrder::Reverse {
                chains.reverse();
            }
            let count = chains.len();
            for chain in chains {
                self.personality.finish(queue, chain);
            }
            count
        })
        .unwrap_or(0)
    }

    /// Ends the held chain at `pick` (modulo how many it holds, oldest
    /// first) as `work` says, without putting it on the used ring (the test
    /// publishes what it likes: [`QueueAccess::publish`]). `None` when it
    /// holds none.
    pub fn end_held(&self, pick: usize, work: HeldWork) -> Option<RunChain> {
        self.with_queue(0, |queue| {
            let chain = queue.take_held(pick)?;
            let written = match work {
                HeldWork::Run(status) => {
                    self.personality.execute(queue.memory, &chain.descriptors, status, queue.accepted)
                }
                HeldWork::Skip => 0,
            };
            let writable = chain.descriptors.iter().filter(|descriptor| descriptor.flags & DESCRIPTOR_WRITE != 0);
            let writable = writable.map(|descriptor| u64::from(descriptor.length)).sum();
            Some(RunChain { head: chain.head, written, writable, first_data: chain.descriptors[1].address })
        })
        .flatten()
    }

    /// Chains the device holds now.
    pub fn held(&self) -> usize {
        self.with_queue(0, |queue| queue.state.held.len()).unwrap_or(0)
    }

    /// `(address, length)` of every data descriptor of the chains the device
    /// holds (between header and status): request memory it may still read or
    /// write.
    pub fn held_data(&self) -> Vec<(u64, u64)> {
        self.with_queue(0, |queue| {
            let data = queue.state.held.iter().flat_map(|chain| &chain.descriptors[1..chain.descriptors.len() - 1]);
            data.map(|descriptor| (descriptor.address, u64::from(descriptor.length))).collect()
        })
        .unwrap_or_default()
    }
}

impl Personality for FakeDisk {
    fn config_bytes(&self) -> u32 {
        DEVICE_CONFIG_BYTES
    }

    /// virtio-blk's configuration, at `offset` from its start.
    fn config_read32(&self, offset: u16) -> u32 {
        let sectors = self.capacity.unwrap_or(self.disk.lock().len() as u64 / SECTOR_SIZE);
        match offset {
            CONFIG_CAPACITY => sectors as u32,
            o if o == CONFIG_CAPACITY + 4 => (sectors >> 32) as u32,
            CONFIG_SEG_MAX => self.seg_max,
            _ => panic!("device configuration read32 of {offset:#x}"),
        }
    }

    /// Processes every new available entry (what QEMU does on a notify), or
    /// in held mode only takes them.
    fn notified(&self, queue: &mut QueueAccess<'_>) {
        assert_eq!(queue.index, 0, "virtio-blk has one queue");
        let chains = queue.take_available();
        {
            let mut longest = self.longest_chain.lock();
            *longest = chains.iter().map(|chain| chain.descriptors.len()).fold(*longest, usize::max);
        }
        if *self.answer.lock() == Answer::Held {
            queue.state.held.extend(chains);
            return;
        }
        for chain in chains {
            self.finish(queue, chain);
        }
    }
}

impl FakeDisk {
    /// Runs a chain and puts it on the used ring.
    fn finish(&self, queue: &mut QueueAccess<'_>, chain: Chain) {
        let misreport = *self.misreport.lock();
        let status = match misreport {
            Misreport::StatusUnwritten => StatusByte::Unwritten,
            _ => StatusByte::AsRun,
        };
        let written = self.execute(queue.memory, &chain.descriptors, status, queue.accepted);
        let head = u32::from(chain.head);
        let elements = match misreport {
            Misreport::Honest | Misreport::StatusUnwritten => vec![(head, written)],
            Misreport::LengthAbovePrepared => vec![(head, written + 4096)],
            Misreport::IdOfNoChain => vec![(head + 1, written)],
            Misreport::ChainTwice => vec![(head, written); 2],
            Misreport::StaleReplay => {
                let held = queue.state.held.iter().map(|held| (u32::from(held.head), 0));
                [(head, written), (head, written)].into_iter().chain(held).collect()
            }
        };
        queue.give_back_elements(&elements);
    }

    /// Runs one request, ending with the status byte `status` says; returns
    /// the bytes written to the driver (counting the status byte even when
    /// it was left unwritten).
    fn execute(&self, memory: &DeviceMemory, chain: &[VirtqDescriptor], status: StatusByte, accepted: u64) -> u32 {
        let last = chain[chain.len() - 1];
        assert!(last.flags & DESCRIPTOR_WRITE != 0 && last.length == 1, "status is one writable byte");
        let (data_written, answer) = self.move_data(memory, chain, accepted);
        match status {
            StatusByte::AsRun => memory.write(last.address, &[answer]),
            StatusByte::Unwritten => {}
            StatusByte::Written(byte) => memory.write(last.address, &[byte]),
        }
        data_written + 1
    }

    /// Moves one request's data; returns the data bytes written to the driver
    /// and the status byte the request earns.
    fn move_data(&self, memory: &DeviceMemory, chain: &[VirtqDescriptor], accepted: u64) -> (u32, u8) {
        let header = memory.read(chain[0].address, 16);
        let kind = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if kind == REQUEST_FLUSH {
            // No data moves: the device writes only the status byte.
            self.flushes.lock().push((sector, chain.len()));
            return (0, if accepted & FEATURE_FLUSH != 0 { self.flush_status } else { STATUS_UNSUPP });
        }
        let data = &chain[1..chain.len() - 1];
        let length: u64 = data.iter().map(|d| u64::from(d.length)).sum();
        let mut disk = self.disk.lock();
        // A sector past what 64 bits of bytes hold (a capacity the
        // configuration lies about) is past the image too.
        let range = sector.checked_mul(SECTOR_SIZE).and_then(|start| Some((start, start.checked_add(length)?)));
        let Some((start, end)) = range.filter(|&(_, end)| end <= disk.len() as u64) else { return (0, STATUS_IOERR) };
        if self.bad_sector.is_some_and(|bad| bad >= sector && bad * SECTOR_SIZE < end) {
            return (0, STATUS_IOERR);
        }
        let mut remaining = match kind {
            REQUEST_IN => self.read_limit.unwrap_or(length).min(length),
            _ => length,
        };
        let moved = remaining;
        let mut position = start as usize;
        for descriptor in data {
            let length = u64::from(descriptor.length).min(remaining) as usize;
            if kind == REQUEST_IN {
                assert!(descriptor.flags & DESCRIPTOR_WRITE != 0, "read data must be device-writable");
                memory.write(descriptor.address, &disk[position..position + length]);
            } else {
                assert!(descriptor.flags & DESCRIPTOR_WRITE == 0, "write data must be device-readable");
                let bytes = memory.read(descriptor.address, length);
                disk[position..position + length].copy_from_slice(&bytes);
            }
            position += length;
            remaining -= length as u64;
        }
        (if kind == REQUEST_IN { moved as u32 } else { 0 }, STATUS_OK)
    }
}
