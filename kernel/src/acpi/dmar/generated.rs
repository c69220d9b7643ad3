//! The DMAR parser fed generated tables: structures of every type (and
//! reserved ones) whose declared lengths are right, 0, short, odd or past the
//! end; device scopes likewise; paths with impossible devices; regions whose
//! limit is below their base; a header length and checksum right or wrong,
//! and the bytes cut anywhere. Parsing must return, and a table built right
//! must parse to what was put in it.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::test_support::generated_input_config;

/// A declared length: the one the bytes need, or another.
#[derive(Clone, Copy, Debug)]
enum Length {
    Right,
    Declared(u16),
    Off(i8),
}

impl Length {
    fn of(self, right: usize) -> u16 {
        match self {
            Length::Right => right as u16,
            Length::Declared(value) => value,
            Length::Off(delta) => (right as u16).wrapping_add_signed(i16::from(delta)),
        }
    }
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        6 => Just(Length::Right),
        1 => prop_oneof![Just(0u16), 1u16..12, any::<u16>()].prop_map(Length::Declared),
        1 => (-3i8..=3).prop_map(Length::Off),
    ]
}

#[derive(Clone, Debug)]
struct GeneratedScope {
    kind: u8,
    length: Length,
    id: u8,
    bus: u8,
    path: Vec<(u8, u8)>,
}

#[derive(Clone, Debug)]
struct GeneratedStructure {
    kind: u16,
    length: Length,
    flags: u8,
    segment: u16,
    base: u64,
    limit: u64,
    scopes: Vec<GeneratedScope>,
}

fn scope() -> impl Strategy<Value = GeneratedScope> {
    let entry = prop_oneof![8 => (0u8..32, 0u8..8), 1 => (any::<u8>(), any::<u8>())];
    (0u8..7, length(), any::<u8>(), any::<u8>(), prop::collection::vec(entry, 0..4))
        .prop_map(|(kind, length, id, bus, path)| GeneratedScope { kind, length, id, bus, path })
}

fn structure() -> impl Strategy<Value = GeneratedStructure> {
    let kind = prop_oneof![4 => 0u16..2, 1 => 2u16..8, 1 => any::<u16>()];
    let base = prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()];
    (
        kind,
        length(),
        any::<u8>(),
        prop_oneof![Just(0u16), any::<u16>()],
        base.clone(),
        base,
        prop::collection::vec(scope(), 0..4),
    )
        .prop_map(|(kind, length, flags, segment, base, limit, scopes)| GeneratedStructure {
            kind,
            length,
            flags,
            segment,
            base,
            limit,
            scopes,
        })
}

/// Whether the table must be refused or the structure's reading ends in a typed error
/// anyway: a length not the right one, a bad path entry, an empty path, an inverted region.
fn faulty(structure: &GeneratedStructure) -> bool {
    let scope_faulty = |scope: &GeneratedScope| {
        !matches!(scope.length, Length::Right)
            || scope.path.is_empty()
            || scope.path.iter().any(|&(device, function)| device > 31 || function > 7)
    };
    !matches!(structure.length, Length::Right)
        || (structure.kind <= 1 && structure.scopes.iter().any(scope_faulty))
        || (structure.kind == 1 && structure.limit < structure.base)
}

fn bytes_of(structure: &GeneratedStructure) -> Vec<u8> {
    let mut body = match structure.kind {
        0 => {
            let mut fixed = vec![structure.flags, 0];
            fixed.extend_from_slice(&structure.segment.to_le_bytes());
            fixed.extend_from_slice(&structure.base.to_le_bytes());
            fixed
        }
        1 => {
            let mut fixed = vec![0, 0];
            fixed.extend_from_slice(&structure.segment.to_le_bytes());
            fixed.extend_from_slice(&structure.base.to_le_bytes());
            fixed.extend_from_slice(&structure.limit.to_le_bytes());
            fixed
        }
        _ => structure.base.to_le_bytes()[..usize::from(structure.flags % 9)].to_vec(),
    };
    for scope in &structure.scopes {
        let right = 6 + 2 * scope.path.len();
        body.extend_from_slice(&[scope.kind, scope.length.of(right) as u8, 0, 0, scope.id, scope.bus]);
        scope.path.iter().for_each(|&(device, function)| body.extend_from_slice(&[device, function]));
    }
    let mut bytes = structure.kind.to_le_bytes().to_vec();
    bytes.extend_from_slice(&structure.length.of(body.len() + 4).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes
}

/// What is done to the finished table.
#[derive(Clone, Copy, Debug)]
struct Damage {
    table_length: Length,
    checksum_fixed: bool,
    cut: Option<usize>,
    flip: Option<(usize, u8)>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        length(),
        prop::bool::weighted(0.9),
        prop::option::weighted(0.1, 0usize..400),
        prop::option::weighted(0.1, (0usize..400, 1u8..=255)),
    )
        .prop_map(|(table_length, checksum_fixed, cut, flip)| Damage { table_length, checksum_fixed, cut, flip })
}

proptest! {
    #![proptest_config(generated_input_config())]

    #[test]
    fn generated_tables_parse_or_fail_with_a_typed_error(
        width in prop_oneof![Just(38u8), Just(0xff), any::<u8>()],
        flags in any::<u8>(),
        structures in prop::collection::vec(structure(), 0..5),
        damage in damage(),
        requester in any::<u16>(),
        bus_behind in any::<u8>(),
    ) {
        let mut table = vec![0u8; HEADER_LENGTH];
        table[..4].copy_from_slice(&SIGNATURE);
        table[36] = width;
        table[37] = flags;
        structures.iter().for_each(|structure| table.extend_from_slice(&bytes_of(structure)));
        let right = table.len();
        table[4..8].copy_from_slice(&u32::from(damage.table_length.of(right)).to_le_bytes());
        if damage.checksum_fixed {
            let sum = table.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
            table[9] = 0u8.wrapping_sub(sum);
        }
        if let Some((at, bits)) = damage.flip && let Some(byte) = table.get_mut(at) {
            *byte ^= bits;
        }
        if let Some(cut) = damage.cut {
            table.truncate(cut);
        }
        let built_right = width != 0xff
            && matches!(damage.table_length, Length::Right)
            && damage.checksum_fixed
            && damage.cut.is_none_or(|cut| cut >= right)
            && damage.flip.is_none_or(|(at, _)| at >= right)
            && !structures.iter().any(faulty);

        match Dmar::parse(&table) {
            Ok(dmar) => {
                let _ = format!("{dmar}");
                prop_assert!(dmar.host_address_width >= 1);
                for scope in dmar.units.iter().flat_map(|unit| &unit.scopes).chain(dmar.reserved.iter().flat_map(|region| &region.scopes)) {
                    prop_assert!(!scope.path.is_empty());
                    prop_assert!(scope.path.iter().all(|&(device, function)| device <= 31 && function <= 7));
                    let _ = scope.requester_id(|_, _, _| bus_behind);
                }
                prop_assert!(dmar.reserved.iter().all(|region| region.base <= region.limit));
                if let Some(index) = dmar.unit_for(requester, |_, _, _| bus_behind) {
                    prop_assert!(index < dmar.units.len());
                }
                if built_right {
                    let count = |kind: u16| structures.iter().filter(|structure| structure.kind == kind).count();
                    prop_assert_eq!((dmar.units.len(), dmar.reserved.len()), (count(0), count(1)));
                    prop_assert_eq!(dmar.skipped.len(), structures.len() - count(0) - count(1));
                }
            }
            Err(error) => {
                prop_assert!(!built_right, "a table built right was refused: {}", error);
                prop_assert!(error.offset <= table.len(), "{} names a byte past the table", error);
                let _ = format!("{error}");
            }
        }
    }

    /// Bytes of any kind, and bytes that start "DMAR" with a length that fits.
    #[test]
    fn random_bytes_parse_or_fail_with_a_typed_error(mut bytes in prop::collection::vec(any::<u8>(), 0..160), dmar in any::<bool>()) {
        if dmar && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(&SIGNATURE);
            let length = bytes.len() as u32;
            bytes[4..8].copy_from_slice(&length.to_le_bytes());
            let sum = bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
            if let Some(checksum) = bytes.get_mut(9) {
                *checksum = checksum.wrapping_sub(sum);
            }
        }
        if let Err(error) = Dmar::parse(&bytes) {
            prop_assert!(error.offset <= bytes.len());
        }
    }
}
