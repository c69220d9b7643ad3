//! How one transfer should be done, beyond what the device requires.

use super::Specification;

/// Extra requirements for one transfer (see [`super::IoDmaCommand::with_transfer`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferOptions {
    /// Limits to add to the command's own specification (for experiments: "what
    /// if this device could only reach 24 bits?"). The stricter of the two wins
    /// for every field.
    pub restrict: Option<Specification>,
    /// Double-buffer this transfer (`synchronize(ForceDoubleBuffer)`).
    pub force_double_buffer: bool,
}
