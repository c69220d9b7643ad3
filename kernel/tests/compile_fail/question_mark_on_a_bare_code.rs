//! A layer above the contract passing a contract call's bare code up with `?`:
//! `IoFailure` has no `From<IoReturn>`, so the cause it would drop must be
//! named (`.map_err(|code| IoFailure::new(code, Cause::...))`) (E0277).

use dmakit::dma::simulated::SimulatedPlatform;
use dmakit::dma::{IoDmaCommand, IoFailure, Specification};

fn command_for_the_layer_above() -> Result<IoDmaCommand, IoFailure> {
    let platform = SimulatedPlatform::leak(16);
    let command = IoDmaCommand::new(platform, Specification::UNLIMITED_32)?;
    Ok(command)
}

fn main() {
    command_for_the_layer_above().unwrap();
}
