//! A shell on the serial console: commands to look at memory, devices and DMA,
//! and to run transfers step by step. Scriptable: pipe commands into `make run`.

#[cfg(target_os = "none")]
mod commands;
#[cfg(target_os = "none")]
mod dma_steal;
#[cfg(target_os = "none")]
mod early_sync;
#[cfg(target_os = "none")]
mod experiments;
#[cfg(target_os = "none")]
mod left;
pub mod line;
pub mod parse;
#[cfg(target_os = "none")]
mod prp_offset;
#[cfg(target_os = "none")]
mod queue;
#[cfg(target_os = "none")]
pub mod reports;
pub mod scatter;
#[cfg(target_os = "none")]
mod skip_invalidate;
#[cfg(target_os = "none")]
mod skip_sync_rx;
#[cfg(target_os = "none")]
mod step;
pub mod step_report;
#[cfg(target_os = "none")]
mod story;

#[cfg(target_os = "none")]
pub use commands::{Input, ScriptInput, SerialInput, execute, run};
#[cfg(target_os = "none")]
pub use story::narrate_one_transfer;
