//! The DMAR parser against tables built byte by byte.

use alloc::string::ToString;
use alloc::vec;

use super::*;

/// Builds DMAR tables byte by byte, as firmware would lay them out.
struct Table(Vec<u8>);

impl Table {
    /// The header, with host address width field `width - 1`.
    fn new(width: u8, flags: u8) -> Table {
        let mut bytes = vec![0u8; HEADER_LENGTH];
        bytes[..4].copy_from_slice(b"DMAR");
        bytes[8] = 1;
        bytes[10..16].copy_from_slice(b"DMAKIT");
        bytes[36] = width - 1;
        bytes[37] = flags;
        Table(bytes)
    }

    fn structure(mut self, kind: u16, body: &[u8]) -> Table {
        self.0.extend_from_slice(&kind.to_le_bytes());
        self.0.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
        self.0.extend_from_slice(body);
        self
    }

    fn drhd(self, flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Table {
        let mut body = vec![flags, 0];
        body.extend_from_slice(&segment.to_le_bytes());
        body.extend_from_slice(&base.to_le_bytes());
        scopes.iter().for_each(|scope| body.extend_from_slice(scope));
        self.structure(0, &body)
    }

    fn rmrr(self, segment: u16, base: u64, limit: u64, scopes: &[Vec<u8>]) -> Table {
        let mut body = vec![0, 0];
        body.extend_from_slice(&segment.to_le_bytes());
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&limit.to_le_bytes());
        scopes.iter().for_each(|scope| body.extend_from_slice(scope));
        self.structure(1, &body)
    }

    /// The finished table: length and checksum filled in.
    fn bytes(mut self) -> Vec<u8> {
        let length = self.0.len() as u32;
        self.0[4..8].copy_from_slice(&length.to_le_bytes());
        self.0[9] = 0;
        let sum = self.0.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte));
        self.0[9] = 0u8.wrapping_sub(sum);
        self.0
    }
}

fn scope(kind: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut bytes = vec![kind, (6 + 2 * path.len()) as u8, 0, 0, id, bus];
    path.iter().for_each(|&(device, function)| bytes.extend_from_slice(&[device, function]));
    bytes
}

/// A bridge at 00:1c.0 whose secondary bus is 3; a bridge at 03:00.0 leading to bus 4.
fn bridges(bus: u8, device: u8, function: u8) -> u8 {
    match (bus, device, function) {
        (0, 0x1c, 0) => 3,
        (3, 0, 0) => 4,
        _ => 0xff,
    }
}

/// Shaped like QEMU's q35 table (one unit at 0xfed90000 listing devices
/// explicitly, and the I/O APIC), with a bridge added.
fn q35_like() -> Vec<u8> {
    Table::new(39, Dmar::INTR_REMAP)
        .drhd(
            0,
            0,
            0xfed9_0000,
            &[
                scope(1, 0, 0, &[(1, 0)]),
                scope(1, 0, 0, &[(2, 0)]),
                scope(2, 0, 0, &[(0x1c, 0)]),
                scope(3, 0, 0xff, &[(0, 0)]),
            ],
        )
        .bytes()
}

/// The DMAR QEMU 7.2 builds for `-machine q35 -device intel-iommu -m 2G` (read
/// from the physical map on a real boot): INTR_REMAP, width 39, one unit at
/// 0xfed90000 without INCLUDE_PCI_ALL, listing the I/O APIC and every device of
/// the default machine (host bridge, VGA, e1000e, LPC, AHCI, SMBus).
#[test]
fn parses_the_table_qemu_q35_builds() {
    let hex = [
        "444d415278000000010d424f4348532042585043202020200100000042585043",
        "0100000026010000000000000000000000004800000000000000d9fe00000000",
        "0308000000ff0000010800000000000001080000000001000108000000000200",
        "0108000000001f000108000000001f020108000000001f03",
    ]
    .concat();
    let bytes: Vec<u8> =
        (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap()).collect();
    assert_eq!(bytes.len(), 120);
    let dmar = Dmar::parse(&bytes).unwrap();
    assert_eq!((dmar.host_address_width, dmar.flags), (39, Dmar::INTR_REMAP));
    assert_eq!(dmar.units.len(), 1);
    assert!(dmar.reserved.is_empty() && dmar.skipped.is_empty());
    assert_eq!(
        dmar.units[0].to_string(),
        "DRHD 0xfed90000 segment 0, covers I/O APIC 0 as ff:00.0, 00:00.0, 00:01.0, 00:02.0, 00:1f.0, 00:1f.2, 00:1f.3"
    );
    let ids: Vec<u16> = dmar.units[0].scopes.iter().map(|scope| scope.requester_id(bridges)).collect();
    assert_eq!(ids, [0xff00, 0x0000, 0x0008, 0x0010, 0x00f8, 0x00fa, 0x00fb]);
    assert_eq!(dmar.unit_for(0x00fa, bridges), Some(0));
    assert_eq!(dmar.unit_for(0x0018, bridges), None, "00:03.0 is not listed");
}

#[test]
fn parses_header_units_and_scopes() {
    let dmar = Dmar::parse(&q35_like()).unwrap();
    assert_eq!(dmar.host_address_width, 39);
    assert!(dmar.interrupt_remapping());
    assert_eq!(dmar.units.len(), 1);
    let unit = &dmar.units[0];
    assert_eq!((unit.segment, unit.register_base, unit.include_all), (0, 0xfed9_0000, false));
    assert_eq!(unit.scopes.len(), 4);
    assert_eq!(
        unit.scopes[3],
        DeviceScope { kind: ScopeKind::IoApic, enumeration_id: 0, start_bus: 0xff, path: vec![(0, 0)] }
    );
    assert_eq!(unit.scopes[2].kind, ScopeKind::PciSubHierarchy);
    assert!(dmar.reserved.is_empty() && dmar.skipped.is_empty());
}

#[test]
fn parses_flags_include_all_and_reserved_regions() {
    let bytes = Table::new(48, Dmar::INTR_REMAP | Dmar::X2APIC_OPT_OUT | Dmar::DMA_CTRL_PLATFORM_OPT_IN)
        .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_1000, &[scope(3, 2, 0xf0, &[(0x1f, 0)]), scope(4, 0, 0, &[(0x1f, 7)])])
        .rmrr(0, 0x7f00_0000, 0x7f0f_ffff, &[scope(1, 0, 0, &[(0x1d, 0)]), scope(1, 0, 0, &[(0x1d, 1)])])
        .bytes();
    let dmar = Dmar::parse(&bytes).unwrap();
    assert_eq!(dmar.host_address_width, 48);
    assert_eq!(dmar.flags, 7);
    assert!(dmar.units[0].include_all);
    assert_eq!(dmar.units[0].scopes[1].kind, ScopeKind::Hpet);
    assert_eq!(
        dmar.reserved,
        vec![ReservedRegion {
            segment: 0,
            base: 0x7f00_0000,
            limit: 0x7f0f_ffff,
            scopes: vec![
                DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 0, path: vec![(0x1d, 0)] },
                DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 0, path: vec![(0x1d, 1)] },
            ],
        }]
    );
}

#[test]
fn skips_atsr_rhsa_andd_and_unknown_types_by_name() {
    let bytes = Table::new(39, 0)
        .structure(2, &[1, 0, 0, 0]) // ATSR: flags, reserved, segment
        .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_0000, &[])
        .structure(3, &[0; 16]) // RHSA: reserved, base, proximity domain
        .structure(4, &[0, 0, 0, 1, b'\\', b'A', 0]) // ANDD
        .structure(42, &[])
        .bytes();
    let dmar = Dmar::parse(&bytes).unwrap();
    assert_eq!(dmar.units.len(), 1);
    let kinds: Vec<_> = dmar.skipped.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StructureKind::Atsr, StructureKind::Rhsa, StructureKind::Andd, StructureKind::Reserved(42)]);
    assert_eq!(dmar.skipped[0], SkippedStructure { kind: StructureKind::Atsr, offset: 48, length: 8 });
    let text = dmar.to_string();
    assert!(text.contains("ATSR (root ports with address translation services) at byte 0x30, 8 bytes: skipped"));
    assert!(text.contains("structure of reserved type 42"));
}

#[test]
fn requester_id_of_a_one_entry_path_is_start_bus_device_function() {
    let scope = DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 2, path: vec![(3, 1)] };
    assert_eq!(scope.requester_id(|_, _, _| panic!("one-entry paths read no bridge")), 0x0219);
}

#[test]
fn requester_id_follows_bridges_through_their_secondary_bus() {
    let behind_one =
        DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 0, path: vec![(0x1c, 0), (0, 2)] };
    assert_eq!(behind_one.requester_id(bridges), 0x0302);
    let behind_two = DeviceScope {
        kind: ScopeKind::PciEndpoint,
        enumeration_id: 0,
        start_bus: 0,
        path: vec![(0x1c, 0), (0, 0), (5, 0)],
    };
    assert_eq!(behind_two.requester_id(bridges), 0x0428);
    let empty = DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 7, path: vec![] };
    assert_eq!(empty.requester_id(bridges), 0x0700);
}

#[test]
fn unit_for_prefers_explicit_scopes_then_include_all_of_segment_0() {
    let bytes = Table::new(39, 0)
        .drhd(0, 1, 0xfed9_2000, &[scope(1, 0, 0, &[(4, 0)])]) // segment 1: never dmakit's
        .drhd(INCLUDE_PCI_ALL, 0, 0xfed9_0000, &[scope(3, 0, 0xff, &[(0, 0)])])
        .drhd(0, 0, 0xfed9_1000, &[scope(1, 0, 0, &[(2, 0)]), scope(2, 0, 0, &[(0x1c, 0)])])
        .bytes();
    let dmar = Dmar::parse(&bytes).unwrap();
    assert_eq!(dmar.unit_for(requester(0, 2, 0), bridges), Some(2), "listed endpoint");
    assert_eq!(dmar.unit_for(requester(0, 0x1c, 0), bridges), Some(2), "the bridge itself");
    assert_eq!(dmar.unit_for(requester(3, 0, 0), bridges), Some(2), "behind the bridge");
    assert_eq!(dmar.unit_for(requester(0, 4, 0), bridges), Some(1), "unlisted on segment 0: include-all");
    assert_eq!(dmar.unit_for(0xff00, bridges), Some(1), "an I/O APIC scope is no PCI function");
}

#[test]
fn unit_for_without_include_all_leaves_unlisted_devices_untranslated() {
    let dmar = Dmar::parse(&q35_like()).unwrap();
    assert_eq!(dmar.unit_for(requester(0, 1, 0), bridges), Some(0));
    assert_eq!(dmar.unit_for(requester(0, 5, 0), bridges), None);
}

#[test]
fn display_reads_as_a_sentence() {
    let dmar = Dmar::parse(&q35_like()).unwrap();
    assert_eq!(
        dmar.units[0].to_string(),
        "DRHD 0xfed90000 segment 0, covers 00:01.0, 00:02.0, 00:1c.0 and the devices behind it, I/O APIC 0 as ff:00.0"
    );
    assert!(dmar.to_string().starts_with("DMAR: host address width 39 bits, flags 0x1 (interrupt remapping)\n  DRHD"));
    let all = RemappingUnit { segment: 0, register_base: 0xfed9_0000, include_all: true, scopes: vec![] };
    assert_eq!(all.to_string(), "DRHD 0xfed90000 segment 0, covers all devices no other unit lists (INCLUDE_PCI_ALL)");
    let deep =
        DeviceScope { kind: ScopeKind::PciEndpoint, enumeration_id: 0, start_bus: 0, path: vec![(0x1c, 0), (0, 2)] };
    assert_eq!(deep.to_string(), "00:1c.0/00.2");
    let region = ReservedRegion { segment: 0, base: 0x1000, limit: 0x1fff, scopes: vec![deep] };
    assert_eq!(region.to_string(), "RMRR 0x1000..=0x1fff segment 0, for 00:1c.0/00.2");
}

fn problem(bytes: &[u8]) -> DmarError {
    Dmar::parse(bytes).unwrap_err()
}

#[test]
fn rejects_bad_headers() {
    assert_eq!(problem(&[0; 10]), DmarError { offset: 0, problem: DmarProblem::TooShort { available: 10 } });
    let mut bytes = q35_like();
    bytes[..4].copy_from_slice(b"DMAX");
    assert_eq!(problem(&bytes).problem, DmarProblem::WrongSignature(*b"DMAX"));

    let good = q35_like();
    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&(good.len() as u32 + 1).to_le_bytes());
    let error = problem(&bytes);
    assert_eq!(error.offset, 4);
    assert!(matches!(error.problem, DmarProblem::LengthPastEnd { .. }));
    bytes[4..8].copy_from_slice(&20u32.to_le_bytes());
    assert_eq!(problem(&bytes).problem, DmarProblem::LengthBelowHeader { declared: 20 });

    let mut bytes = good.clone();
    bytes[60] ^= 0x10;
    assert_eq!(problem(&bytes), DmarError { offset: 9, problem: DmarProblem::Checksum { sum: 0x10 } });

    let mut table = Table::new(39, 0);
    table.0[36] = 255;
    assert_eq!(problem(&table.bytes()).problem, DmarProblem::HostAddressWidth);
}

#[test]
fn rejects_bad_structures_naming_the_byte() {
    // A zero-length structure would make the walk loop for ever.
    let bytes = Table::new(39, 0).structure(2, &[]).bytes();
    let mut zero = bytes.clone();
    zero[50..52].copy_from_slice(&0u16.to_le_bytes());
    let zero = Table(zero).bytes();
    let error = problem(&zero);
    assert_eq!(
        error,
        DmarError {
            offset: 50,
            problem: DmarProblem::StructureTooShort { kind: StructureKind::Atsr, length: 0, minimum: 4 }
        }
    );
    assert_eq!(
        error.to_string(),
        "DMAR byte 0x32: ATSR (root ports with address translation services) of length 0: it must be at least 4 bytes"
    );

    // A DRHD shorter than its fixed part.
    let short = Table::new(39, 0).structure(0, &[0; 8]).bytes();
    assert!(matches!(
        problem(&short).problem,
        DmarProblem::StructureTooShort { kind: StructureKind::Drhd, length: 12, .. }
    ));

    // A structure whose length runs past the table.
    let mut past = Table::new(39, 0).drhd(0, 0, 0xfed9_0000, &[]).bytes();
    past[50..52].copy_from_slice(&40u16.to_le_bytes());
    let past = Table(past).bytes();
    assert_eq!(
        problem(&past),
        DmarError {
            offset: 50,
            problem: DmarProblem::StructurePastEnd { kind: StructureKind::Drhd, length: 40, remaining: 16 }
        }
    );

    // Two stray bytes after the last structure.
    let mut stray = Table::new(39, 0).drhd(0, 0, 0xfed9_0000, &[]).bytes();
    stray.extend_from_slice(&[0, 0]);
    let stray = Table(stray).bytes();
    assert_eq!(
        problem(&stray),
        DmarError { offset: 64, problem: DmarProblem::StructureHeaderTruncated { remaining: 2 } }
    );

    let inverted = Table::new(39, 0).rmrr(0, 0x2000, 0x1fff, &[]).bytes();
    assert_eq!(problem(&inverted).offset, 64);
}

#[test]
fn rejects_bad_scopes_naming_the_byte() {
    // Scopes start at byte 48 + 16 = 64 in a first DRHD.
    let truncated = Table::new(39, 0).drhd(0, 0, 0, &[vec![1, 8, 0, 0]]).bytes();
    assert_eq!(problem(&truncated), DmarError { offset: 64, problem: DmarProblem::ScopeTruncated { remaining: 4 } });

    let no_path = Table::new(39, 0).drhd(0, 0, 0, &[scope(1, 0, 0, &[])]).bytes();
    assert_eq!(problem(&no_path), DmarError { offset: 65, problem: DmarProblem::ScopeTooShort { length: 6 } });

    let mut odd = scope(1, 0, 0, &[(1, 0)]);
    odd[1] = 9;
    odd.push(0);
    let odd = Table::new(39, 0).drhd(0, 0, 0, &[odd]).bytes();
    assert_eq!(problem(&odd).problem, DmarProblem::ScopeOddLength { length: 9 });

    let mut long = scope(1, 0, 0, &[(1, 0)]);
    long[1] = 10;
    let long = Table::new(39, 0).drhd(0, 0, 0, &[long]).bytes();
    assert_eq!(
        problem(&long),
        DmarError { offset: 65, problem: DmarProblem::ScopePastEnd { length: 10, remaining: 8 } }
    );

    let bad_entry = Table::new(39, 0).drhd(0, 0, 0, &[scope(1, 0, 0, &[(1, 0), (32, 0)])]).bytes();
    let error = problem(&bad_entry);
    assert_eq!(error, DmarError { offset: 72, problem: DmarProblem::PathEntry { device: 32, function: 0 } });
    assert!(error.to_string().starts_with("DMAR byte 0x48: path entry 0x20.0x0"));
}

#[test]
fn bytes_past_the_declared_length_are_ignored() {
    let mut bytes = q35_like();
    bytes.extend_from_slice(&[0xaa; 7]);
    assert_eq!(Dmar::parse(&bytes).unwrap(), Dmar::parse(&q35_like()).unwrap());
}

proptest::proptest! {
    /// Whatever the bytes, parsing returns; it never panics or loops.
    #[test]
    fn never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200), mutate in 0usize..400, value: u8) {
        let mut bytes = Table(Table::new(39, 0).0).bytes();
        bytes.extend_from_slice(&body);
        let mut bytes = Table(bytes).bytes();
        if let Some(byte) = bytes.get_mut(mutate) {
            *byte = value;
        }
        let _ = Dmar::parse(&bytes);
        // Also with a fixed-up checksum, so the structure walk runs.
        let _ = Dmar::parse(&Table(bytes).bytes());
    }
}
