//! The survey fed generated memory: random bytes, and RSDPs, root tables and
//! tables with the right signatures but lengths of 0, short, odd or past the
//! end of memory, checksums right and wrong, entries pointing out of memory,
//! at the RSDP, at the root table and at each other; MADTs ("APIC", which
//! dmakit does not parse: the survey lists them and the `acpi` crate steps
//! over them) with entries of length 0. The survey must return, having asked
//! `read` for a bounded number of ranges, and what it reports must be what
//! the bytes say. Where it accepts the memory, the `acpi` crate must map only
//! ranges the survey read (`crate_walk`).

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::test_support::generated_input_config;

mod crate_walk;

/// Bytes of generated physical memory, from address 0.
const MEMORY: usize = 0x1000;

/// Where a generated pointer points.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// A generated table.
    Table(Index),
    /// The root table.
    Root,
    /// The RSDP.
    Rsdp,
    /// Any address in memory or just past it.
    Near(u16),
    /// Any 64-bit address.
    Anywhere(u64),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        6 => any::<Index>().prop_map(Target::Table),
        1 => Just(Target::Root),
        1 => Just(Target::Rsdp),
        1 => (0u16..0x1100).prop_map(Target::Near),
        1 => any::<u64>().prop_map(Target::Anywhere),
    ]
}

/// A declared length: the one the bytes need, or another.
#[derive(Clone, Copy, Debug)]
enum Length {
    Right,
    Declared(u32),
}

impl Length {
    fn of(self, right: usize) -> u32 {
        match self {
            Length::Right => right as u32,
            Length::Declared(value) => value,
        }
    }
}

fn length() -> impl Strategy<Value = Length> {
    prop_oneof![
        6 => Just(Length::Right),
        1 => prop_oneof![Just(0u32), 1u32..48, 0xff0u32..0x1010, any::<u32>()].prop_map(Length::Declared),
    ]
}

/// A table other than the root: its signature, place, body and damage.
#[derive(Clone, Debug)]
struct GeneratedTable {
    signature: [u8; 4],
    address: u16,
    body: Vec<u8>,
    length: Length,
    checksum_fixed: bool,
}

fn table() -> impl Strategy<Value = GeneratedTable> {
    let signature =
        prop_oneof![Just(*b"FACP"), Just(*b"APIC"), Just(*b"DMAR"), Just(*b"XSDT"), Just(*b"RSDT"), any::<[u8; 4]>(),];
    // An MADT body: local APIC address and flags, then entries (type, length, ...)
    // whose lengths are often 0 or 1, which a careless reader loops on.
    let madt_entry = (any::<u8>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(8), any::<u8>()], any::<[u8; 6]>())
        .prop_map(|(kind, length, rest)| {
            let mut entry = vec![kind, length];
            entry.extend_from_slice(&rest[..usize::from(length.saturating_sub(2)).min(6)]);
            entry
        });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        (any::<[u8; 8]>(), prop::collection::vec(madt_entry, 0..5)).prop_map(|(fixed, entries)| {
            let mut body = fixed.to_vec();
            entries.iter().for_each(|entry| body.extend_from_slice(entry));
            body
        }),
    ];
    (signature, 0u16..0x1010, body, length(), prop::bool::weighted(0.9)).prop_map(
        |(signature, address, body, length, checksum_fixed)| GeneratedTable {
            signature,
            address,
            body,
            length,
            checksum_fixed,
        },
    )
}

/// The RSDP: where it lies, its revision (0: RSDT, else XSDT), its ACPI 2.0
/// length field, and whether its two checksums are fixed.
#[derive(Clone, Copy, Debug)]
struct GeneratedRsdp {
    address: u16,
    revision: u8,
    length: Length,
    checksums_fixed: (bool, bool),
}

/// The root table: where it lies, its signature (`None`: the right one), its
/// length, its checksum, and where its entries point.
#[derive(Clone, Debug)]
struct GeneratedRoot {
    address: u16,
    signature: Option<[u8; 4]>,
    length: Length,
    checksum_fixed: bool,
    entries: Vec<Target>,
}

/// A whole generated machine's ACPI memory.
#[derive(Clone, Debug)]
struct Machine {
    seed: u64,
    rsdp: GeneratedRsdp,
    root: GeneratedRoot,
    tables: Vec<GeneratedTable>,
}

fn machine() -> impl Strategy<Value = Machine> {
    let checksums = (prop::bool::weighted(0.9), prop::bool::weighted(0.9));
    let revision = prop_oneof![Just(0u8), Just(2), any::<u8>()];
    let rsdp = (prop_oneof![0u16..0x1010, Just(0xfdc)], revision, length(), checksums).prop_map(
        |(address, revision, length, checksums_fixed)| GeneratedRsdp { address, revision, length, checksums_fixed },
    );
    let signature = prop::option::weighted(0.1, prop_oneof![Just(*b"RSDT"), Just(*b"XSDT"), any::<[u8; 4]>()]);
    let root = (0u16..0x1010, signature, length(), prop::bool::weighted(0.9), prop::collection::vec(target(), 0..6))
        .prop_map(|(address, signature, length, checksum_fixed, entries)| GeneratedRoot {
            address,
            signature,
            length,
            checksum_fixed,
            entries,
        });
    (any::<u64>(), rsdp, root, prop::collection::vec(table(), 0..5)).prop_map(|(seed, rsdp, root, tables)| Machine {
        seed,
        rsdp,
        root,
        tables,
    })
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

/// Writes `bytes` at `address`, cut at the end of memory.
fn put(memory: &mut [u8], address: u16, bytes: &[u8]) {
    let start = usize::from(address).min(memory.len());
    memory[start..].iter_mut().zip(bytes).for_each(|(byte, value)| *byte = *value);
}

/// A table's bytes: header (length as declared, checksum fixed or not) and body.
fn table_bytes(signature: [u8; 4], body: &[u8], length: Length, checksum_fixed: bool) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER_LENGTH];
    bytes[..4].copy_from_slice(&signature);
    bytes[8] = 1;
    bytes[10..16].copy_from_slice(b"DMAKIT");
    bytes.extend_from_slice(body);
    let declared = length.of(bytes.len());
    bytes[4..8].copy_from_slice(&declared.to_le_bytes());
    if checksum_fixed {
        // Over the declared length where the bytes reach that far.
        let covered = (declared as usize).min(bytes.len());
        bytes[9] = 0u8.wrapping_sub(sum(&bytes[..covered]));
    }
    bytes
}

impl Machine {
    fn address(&self, target: Target) -> u64 {
        match target {
            Target::Table(index) if self.tables.is_empty() => index.index(MEMORY) as u64,
            Target::Table(index) => u64::from(self.tables[index.index(self.tables.len())].address),
            Target::Root => u64::from(self.root.address),
            Target::Rsdp => u64::from(self.rsdp.address),
            Target::Near(address) => u64::from(address),
            Target::Anywhere(address) => address,
        }
    }

    /// The memory: random bytes, then the tables, the root table and the RSDP
    /// (a later one overwrites an earlier one where they overlap).
    fn memory(&self) -> Vec<u8> {
        let mut state = self.seed;
        let mut memory: Vec<u8> = (0..MEMORY)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mixed = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                (mixed ^ (mixed >> 27)) as u8
            })
            .collect();
        for table in &self.tables {
            put(
                &mut memory,
                table.address,
                &table_bytes(table.signature, &table.body, table.length, table.checksum_fixed),
            );
        }
        let (entry_size, expected) = if self.rsdp.revision == 0 { (4, *b"RSDT") } else { (8, *b"XSDT") };
        let entries: Vec<u8> = self
            .root
            .entries
            .iter()
            .flat_map(|&target| self.address(target).to_le_bytes().into_iter().take(entry_size))
            .collect();
        let signature = self.root.signature.unwrap_or(expected);
        put(
            &mut memory,
            self.root.address,
            &table_bytes(signature, &entries, self.root.length, self.root.checksum_fixed),
        );

        let mut rsdp = vec![0u8; RSDP_LENGTH];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[9..15].copy_from_slice(b"DMAKIT");
        rsdp[15] = self.rsdp.revision;
        rsdp[16..20].copy_from_slice(&u32::from(self.root.address).to_le_bytes());
        rsdp[20..24].copy_from_slice(&self.rsdp.length.of(RSDP_LENGTH).to_le_bytes());
        rsdp[24..32].copy_from_slice(&u64::from(self.root.address).to_le_bytes());
        if self.rsdp.checksums_fixed.0 {
            rsdp[8] = 0u8.wrapping_sub(sum(&rsdp[..RSDP_V1_LENGTH]));
        }
        if self.rsdp.checksums_fixed.1 {
            rsdp[32] = 0u8.wrapping_sub(sum(&rsdp));
        }
        put(&mut memory, self.rsdp.address, &rsdp);
        memory
    }
}

/// Every range the survey asked `read` for, and whether `read` gave it.
type Reads = RefCell<Vec<(u64, usize, bool)>>;

/// Surveys `memory` from `rsdp`, recording the reads.
fn survey_recorded(memory: &[u8], rsdp: u64, reads: &Reads) -> Result<Survey, AcpiFailure> {
    survey(rsdp, |address, length| {
        let bytes = memory.get(usize::try_from(address).ok()?..usize::try_from(address).ok()?.checked_add(length)?);
        reads.borrow_mut().push((address, length, bytes.is_some()));
        bytes
    })
}

/// The survey's answer holds for `memory`: each table is what its bytes say,
/// each refusal is true of them.
fn check(memory: &[u8], result: &Result<Survey, AcpiFailure>, reads: &Reads) -> Result<(), TestCaseError> {
    let bytes_at = |address: u64, length: usize| {
        memory.get(usize::try_from(address).ok()?..usize::try_from(address).ok()?.checked_add(length)?)
    };
    match result {
        Ok(survey) => {
            let entry_size = if survey.rsdp_revision == 0 { 4 } else { 8 };
            let expected = if survey.rsdp_revision == 0 { *b"RSDT" } else { *b"XSDT" };
            prop_assert_eq!(survey.root.signature, expected);
            prop_assert!(survey.root.checksum_ok);
            prop_assert_eq!(survey.tables.len(), (survey.root.length as usize - HEADER_LENGTH) / entry_size);
            for table in core::iter::once(&survey.root).chain(&survey.tables) {
                let header = bytes_at(table.address, HEADER_LENGTH).expect("a listed table's header lies in memory");
                prop_assert_eq!(&table.signature[..], &header[..4]);
                prop_assert_eq!(table.length, u32_at(header, 4));
                let whole = bytes_at(table.address, table.length as usize);
                prop_assert_eq!(
                    table.checksum_ok,
                    table.length as usize >= HEADER_LENGTH && whole.is_some_and(|whole| sum(whole) == 0)
                );
                let _ = format!("{table}");
            }
        }
        Err(failure) => {
            if let AcpiFailure::OutsideMap { address, length, .. } = *failure {
                prop_assert!(bytes_at(address, length as usize).is_none(), "{} lies in memory", failure);
            }
            let _ = format!("{failure}");
        }
    }
    prop_assert!(reads.borrow().len() <= 4 + 2 * (memory.len() / 4), "{} reads", reads.borrow().len());
    Ok(())
}

proptest! {
    #![proptest_config(generated_input_config())]

    /// Generated machines: the survey returns, tells the truth, and where it
    /// accepts them the `acpi` crate stays inside what it read.
    #[test]
    fn generated_tables_are_surveyed_truthfully(machine in machine()) {
        let memory = machine.memory();
        let reads = Reads::default();
        let result = survey_recorded(&memory, u64::from(machine.rsdp.address), &reads);
        check(&memory, &result, &reads)?;
        if result.is_ok() {
            let surveyed: Vec<(u64, usize)> = reads.borrow().iter().filter(|read| read.2).map(|read| (read.0, read.1)).collect();
            crate_walk::find_dmar(&memory, u64::from(machine.rsdp.address), &surveyed)?;
        }
    }

    /// Random memory from a random RSDP address (almost always refused).
    #[test]
    fn random_memory_is_refused_or_surveyed_truthfully(memory in prop::collection::vec(any::<u8>(), 0..128), rsdp in prop_oneof![0u64..128, any::<u64>()]) {
        let reads = Reads::default();
        let result = survey_recorded(&memory, rsdp, &reads);
        check(&memory, &result, &reads)?;
    }
}
