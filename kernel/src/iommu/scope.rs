//! Which remapping unit translates for a device: the DMAR table's device
//! scopes, where an explicit scope wins over INCLUDE_PCI_ALL.

use alloc::vec::Vec;

/// One remapping unit as the DMAR table describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitDescription {
    /// Physical address of its register page.
    pub register_base: u64,
    /// INCLUDE_PCI_ALL: it serves every device no other unit lists.
    pub include_all: bool,
    /// Requester ids in its device scope.
    pub devices: Vec<u16>,
}

/// Which of `units` translates for `requester_id`: the one that lists it, else
/// one with INCLUDE_PCI_ALL (the DMAR table's rule: an explicit scope wins).
pub fn covering_unit(units: &[UnitDescription], requester_id: u16) -> Option<usize> {
    units
        .iter()
        .position(|unit| unit.devices.contains(&requester_id))
        .or_else(|| units.iter().position(|unit| unit.include_all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_scope_wins_over_include_all() {
        let units = [
            UnitDescription { register_base: 0xfed9_0000, include_all: true, devices: Vec::new() },
            UnitDescription { register_base: 0xfed9_1000, include_all: false, devices: alloc::vec![0x0010] },
        ];
        assert_eq!(covering_unit(&units, 0x0010), Some(1));
        assert_eq!(covering_unit(&units, 0x0018), Some(0));
        assert_eq!(covering_unit(&units[1..], 0x0018), None);
    }
}
