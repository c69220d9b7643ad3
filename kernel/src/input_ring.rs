//! The serial console's receive ring: the UART's interrupt handler puts bytes
//! in, the shell takes them out. One producer and one consumer, lock-free (the
//! handler cannot wait for a lock the shell holds), no allocation (the handler
//! must not allocate). A full ring drops the byte and counts it rather than
//! wait: the handler has to empty the UART's FIFO, or its interrupt line stays
//! up and, edge-triggered on the PIC, never fires again. The byte stored next
//! carries a mark, so the shell knows which line lost bytes. Pure, so it is
//! tested on the host.

use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};

/// How a byte taken from the ring follows the one before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Right after the byte before: nothing was lost between them.
    InOrder,
    /// The ring was full before this byte came: bytes between the one before
    /// and this one were dropped.
    AfterLostBytes,
}

/// A byte taken from the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// The byte.
    pub byte: u8,
    /// Whether bytes were dropped just before it.
    pub arrival: Arrival,
}

/// What [`InputRing::push`] did with a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Stored for the consumer.
    Stored,
    /// The ring was full: dropped, and counted.
    Dropped,
}

/// The serial console's ring: a line the shell refuses ([`MAX_LINE`]) many
/// times over, or a pasted script of some 200 lines typed ahead while a
/// command runs. 16 KiB of static memory (two bytes a slot).
///
/// [`MAX_LINE`]: crate::shell::line::MAX_LINE
pub const CONSOLE_RING_BYTES: usize = 8192;

/// A slot's mark, above the byte: bytes were dropped before this one.
const LOST_BEFORE: u16 = 1 << 8;

/// A ring of `CAPACITY` bytes. `push` is the producer's alone and `pop` the
/// consumer's alone: each side writes only its own counter, and the counters
/// only grow (a slot is `counter % CAPACITY`), so full and empty differ.
pub struct InputRing<const CAPACITY: usize> {
    /// Each slot: a byte, and [`LOST_BEFORE`] when bytes were dropped before it.
    slots: [AtomicU16; CAPACITY],
    /// Bytes ever stored (the producer's).
    stored: AtomicUsize,
    /// Bytes ever taken (the consumer's).
    taken: AtomicUsize,
    /// Bytes ever dropped because the ring was full.
    dropped: AtomicU64,
    /// The producer's own note that the next byte it stores follows dropped ones.
    gap: AtomicBool,
}

impl<const CAPACITY: usize> InputRing<CAPACITY> {
    /// An empty ring.
    #[allow(clippy::new_without_default, reason = "a static's initialiser: const")]
    pub const fn new() -> Self {
        InputRing {
            slots: [const { AtomicU16::new(0) }; CAPACITY],
            stored: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            gap: AtomicBool::new(false),
        }
    }

    /// The producer: stores `byte`, or drops and counts it when the ring is full.
    pub fn push(&self, byte: u8) -> Pushed {
        let stored = self.stored.load(Ordering::Relaxed);
        // Acquire: the consumer has read the slot it gave back before we reuse it.
        let taken = self.taken.load(Ordering::Acquire);
        if stored.wrapping_sub(taken) >= CAPACITY {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.gap.store(true, Ordering::Relaxed);
            return Pushed::Dropped;
        }
        let mark = match self.gap.swap(false, Ordering::Relaxed) {
            true => LOST_BEFORE,
            false => 0,
        };
        self.slots[stored % CAPACITY].store(u16::from(byte) | mark, Ordering::Relaxed);
        // Release: the slot is written before the consumer can see it counted.
        self.stored.store(stored.wrapping_add(1), Ordering::Release);
        Pushed::Stored
    }

    /// The consumer: the oldest byte, if any.
    pub fn pop(&self) -> Option<Received> {
        let taken = self.taken.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release, so the slot is complete.
        if self.stored.load(Ordering::Acquire) == taken {
            return None;
        }
        let slot = self.slots[taken % CAPACITY].load(Ordering::Relaxed);
        // Release: the slot is read before the producer may write it again.
        self.taken.store(taken.wrapping_add(1), Ordering::Release);
        let arrival = match slot & LOST_BEFORE {
            0 => Arrival::InOrder,
            _ => Arrival::AfterLostBytes,
        };
        Some(Received { byte: slot as u8, arrival })
    }

    /// Whether the consumer would find nothing.
    pub fn is_empty(&self) -> bool {
        self.stored.load(Ordering::Acquire) == self.taken.load(Ordering::Relaxed)
    }

    /// Bytes dropped since the ring was made.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The bytes the ring holds at most.
    pub const fn capacity(&self) -> usize {
        CAPACITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn drain<const CAPACITY: usize>(ring: &InputRing<CAPACITY>) -> Vec<Received> {
        core::iter::from_fn(|| ring.pop()).collect()
    }

    fn in_order(bytes: &[u8]) -> Vec<Received> {
        bytes.iter().map(|&byte| Received { byte, arrival: Arrival::InOrder }).collect()
    }

    #[test]
    fn bytes_come_out_in_the_order_they_went_in_across_the_wrap() {
        let ring = InputRing::<4>::new();
        assert!(ring.is_empty());
        assert_eq!(ring.pop(), None);
        for round in 0..5u8 {
            for byte in [round, round + 10, round + 20] {
                assert_eq!(ring.push(byte), Pushed::Stored);
            }
            assert!(!ring.is_empty());
            assert_eq!(drain(&ring), in_order(&[round, round + 10, round + 20]), "round {round}");
            assert!(ring.is_empty());
        }
        assert_eq!(ring.dropped(), 0);
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_marks_the_next_byte_it_stores() {
        let ring = InputRing::<4>::new();
        for byte in *b"abcd" {
            assert_eq!(ring.push(byte), Pushed::Stored);
        }
        assert_eq!(ring.push(b'e'), Pushed::Dropped, "full: dropped, not waited for");
        assert_eq!(ring.push(b'f'), Pushed::Dropped);
        assert_eq!(ring.dropped(), 2);
        assert_eq!(ring.pop().map(|received| received.byte), Some(b'a'));
        assert_eq!(ring.pop().map(|received| received.byte), Some(b'b'));
        assert_eq!(ring.push(b'g'), Pushed::Stored, "slots came free");
        assert_eq!(ring.push(b'h'), Pushed::Stored);
        let mut expected = in_order(b"cd");
        expected.push(Received { byte: b'g', arrival: Arrival::AfterLostBytes });
        expected.push(Received { byte: b'h', arrival: Arrival::InOrder });
        assert_eq!(drain(&ring), expected, "the gap is where e and f were");
        assert_eq!(ring.dropped(), 2, "the count stays");
    }

    #[test]
    fn a_ring_filled_again_after_a_gap_marks_each_gap() {
        let ring = InputRing::<2>::new();
        ring.push(1);
        ring.push(2);
        ring.push(3);
        ring.pop();
        ring.push(4);
        ring.push(5);
        ring.pop();
        ring.push(6);
        let arrivals: Vec<(u8, Arrival)> =
            drain(&ring).into_iter().map(|received| (received.byte, received.arrival)).collect();
        assert_eq!(arrivals, [(4, Arrival::AfterLostBytes), (6, Arrival::AfterLostBytes)]);
        assert_eq!(ring.dropped(), 2);
    }

    #[test]
    fn a_producer_thread_and_a_consumer_thread_lose_nothing_while_the_ring_has_room() {
        use std::sync::Arc;
        const BYTES: usize = 200_000;
        let ring = Arc::new(InputRing::<64>::new());
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                while sent < BYTES {
                    // Like the UART handler, it never waits: a full ring drops;
                    // here it only offers a byte again while the ring is full.
                    if ring.push(sent as u8) == Pushed::Stored {
                        sent += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut received = Vec::with_capacity(BYTES);
        while received.len() < BYTES {
            match ring.pop() {
                Some(byte) => received.push(byte),
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        let gaps = received.iter().filter(|byte| byte.arrival == Arrival::AfterLostBytes).count();
        // Each refused offer counts as a drop, and the next byte stored is marked.
        assert_eq!(gaps == 0, ring.dropped() == 0, "marks only where bytes were refused");
        assert!(gaps as u64 <= ring.dropped(), "one mark per run of drops");
        let bytes: Vec<u8> = received.iter().map(|received| received.byte).collect();
        let expected: Vec<u8> = (0..BYTES).map(|number| number as u8).collect();
        assert!(bytes == expected, "every stored byte arrives once, in order");
    }
}
