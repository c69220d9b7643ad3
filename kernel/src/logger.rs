//! A small `log` back end on the serial console, with its level taken from the
//! kernel command line (`log=error|warn|info|debug|trace`, default `info`).

use log::LevelFilter;
#[cfg(target_os = "none")]
use log::{Log, Metadata, Record};

#[cfg(target_os = "none")]
struct SerialLogger;

#[cfg(target_os = "none")]
impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            crate::println!("[{:<5}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

#[cfg(target_os = "none")]
static LOGGER: SerialLogger = SerialLogger;

/// The level named by `log=...` in `command_line`, or `Info`.
pub fn level_from_command_line(command_line: &str) -> LevelFilter {
    command_line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("log="))
        .and_then(|level| level.parse().ok())
        .unwrap_or(LevelFilter::Info)
}

#[cfg(target_os = "none")]
/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter) {
    // Only the first call can install it; that is the one that matters.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_is_read_from_the_command_line() {
        assert_eq!(level_from_command_line("quiet log=debug"), LevelFilter::Debug);
        assert_eq!(level_from_command_line("log=nonsense"), LevelFilter::Info);
        assert_eq!(level_from_command_line(""), LevelFilter::Info);
    }
}
