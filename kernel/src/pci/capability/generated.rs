//! The capability walk and the virtio capability decoder fed generated
//! configuration spaces: random bytes with capabilities placed at random
//! (unaligned, in the header, at the very end), linked at random or to each
//! other (cycles), with `cap_len`, `cfg_type` and BAR numbers at and past their
//! limits. The walk must end after a bounded number of aligned reads, and
//! what it and the decoder report must be what the bytes say.

use core::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::test_support::generated_input_config;

/// Where a placed capability's next pointer goes.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// Any byte: the header, past the end, unaligned, 0.
    Byte(u8),
    /// Another placed capability (itself included): cycles.
    Placed(Index),
}

/// A capability written into the generated space.
#[derive(Clone, Debug)]
struct Placed {
    offset: u8,
    id: u8,
    next: Next,
    cap_len: u8,
    cfg_type: u8,
    bar: u8,
    rest: [u8; 16],
}

fn placed() -> impl Strategy<Value = Placed> {
    (
        prop_oneof![any::<u8>(), (0x10u8..0x40).prop_map(|dword| dword * 4)],
        prop_oneof![Just(VENDOR_SPECIFIC), Just(0x11), any::<u8>()],
        prop_oneof![any::<u8>().prop_map(Next::Byte), any::<Index>().prop_map(Next::Placed)],
        prop_oneof![Just(16u8), Just(20), 0u8..24, any::<u8>()],
        0u8..8,
        0u8..8,
        any::<[u8; 16]>(),
    )
        .prop_map(|(offset, id, next, cap_len, cfg_type, bar, rest)| Placed {
            offset,
            id,
            next,
            cap_len,
            cfg_type,
            bar,
            rest,
        })
}

/// A configuration space: `seed`'s bytes, then the status bit, the first
/// pointer and the placed capabilities (later ones overwrite earlier ones).
fn space(seed: u64, has_list: bool, first: Next, capabilities: &[Placed]) -> [u8; 256] {
    let mut space = [0u8; 256];
    let mut state = seed;
    for byte in space.iter_mut() {
        // splitmix64: cheap bytes that still differ from case to case.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mixed = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        *byte = (mixed ^ (mixed >> 27)) as u8;
    }
    let target = |next: Next| match next {
        Next::Byte(byte) => byte,
        Next::Placed(index) if capabilities.is_empty() => index.index(256) as u8,
        Next::Placed(index) => capabilities[index.index(capabilities.len())].offset,
    };
    if has_list {
        space[0x06] |= 0x10
    } else {
        space[0x06] &= !0x10
    }
    space[usize::from(CAPABILITY_POINTER)] = target(first);
    for capability in capabilities {
        let bytes = [capability.id, target(capability.next), capability.cap_len, capability.cfg_type, capability.bar];
        let at = usize::from(capability.offset);
        for (byte, value) in space[at..].iter_mut().zip(bytes.iter().chain(&capability.rest)) {
            *byte = *value;
        }
    }
    space
}

/// The capability list as the PCI specification defines it, walked from the
/// bytes, `MAX_CAPABILITIES` at most.
fn reference_walk(space: &[u8; 256]) -> Vec<Capability> {
    let mut found = Vec::new();
    if space[0x06] & 0x10 == 0 {
        return found;
    }
    let mut pointer = space[usize::from(CAPABILITY_POINTER)] & 0xfc;
    while pointer >= 0x40 && found.len() < MAX_CAPABILITIES {
        found.push(Capability { offset: pointer, id: space[usize::from(pointer)] });
        pointer = space[usize::from(pointer) + 1] & 0xfc;
    }
    found
}

fn dword_at(space: &[u8; 256], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(space.get(at..at + 4)?.try_into().ok()?))
}

proptest! {
    #![proptest_config(generated_input_config())]

    #[test]
    fn walks_end_and_decode_what_the_bytes_say(
        seed in any::<u64>(),
        has_list in prop::bool::weighted(0.9),
        first in prop_oneof![any::<u8>().prop_map(Next::Byte), any::<Index>().prop_map(Next::Placed)],
        capabilities in prop::collection::vec(placed(), 0..10),
        start in any::<u8>(),
        length in 0usize..300,
    ) {
        let space = space(seed, has_list, first, &capabilities);
        // The status dword, the first pointer and one read per capability: a
        // walk that reads more has not ended, and is stopped here.
        let budget = Cell::new(2 + MAX_CAPABILITIES);
        let misaligned = Cell::new(None);
        let read_dword = |offset: u8| {
            let left = budget.get().checked_sub(1).expect("more configuration reads than a walk that ends");
            budget.set(left);
            if !offset.is_multiple_of(4) {
                misaligned.set(Some(offset));
            }
            let at = usize::from(offset & 0xfc);
            u32::from_le_bytes(space[at..at + 4].try_into().expect("4 bytes"))
        };

        let found = walk(read_dword);
        prop_assert_eq!(misaligned.get(), None, "an unaligned configuration read");
        budget.set(usize::MAX);
        prop_assert_eq!(&found, &reference_walk(&space));

        for virtio in virtio_capabilities(read_dword, &found) {
            let at = usize::from(virtio.capability.offset);
            prop_assert!(found.contains(&virtio.capability));
            prop_assert_eq!((virtio.capability.id, space[at]), (VENDOR_SPECIFIC, VENDOR_SPECIFIC));
            prop_assert!(usize::from(space[at + 2]) >= 16 && virtio.bar <= 5 && virtio.bar == space[at + 4]);
            prop_assert_eq!(VirtioStructure::from_cfg_type(space[at + 3]), Some(virtio.structure));
            prop_assert_eq!(Some(virtio.offset), dword_at(&space, at + 8));
            prop_assert_eq!(Some(virtio.length), dword_at(&space, at + 12));
            let multiplier = (virtio.structure == VirtioStructure::Notify).then(|| dword_at(&space, at + 16)).flatten();
            prop_assert_eq!(virtio.notify_off_multiplier, multiplier);
        }
        prop_assert_eq!(misaligned.get(), None, "an unaligned configuration read");

        let bytes = read_bytes(read_dword, start, length);
        let end = (usize::from(start) + length).min(256);
        prop_assert_eq!(&bytes[..], &space[usize::from(start)..end]);
        let capability = Capability { offset: start, id: VENDOR_SPECIFIC };
        if let Some(virtio) = VirtioCapability::parse(capability, &bytes) {
            prop_assert!(virtio.bar <= 5 && bytes.len() >= 16);
        }
    }
}
