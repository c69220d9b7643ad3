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
    level_option(command_line).level()
}

/// What the command line's `log=` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelOption<'a> {
    /// No `log=`: the level is `info`.
    Absent,
    /// A level `log` knows (`off`, `error`, `warn`, `info`, `debug`, `trace`).
    Taken(LevelFilter),
    /// Something else: the level stays `info`, and the boot says so.
    NotALevel(&'a str),
}

impl LevelOption<'_> {
    /// The level in force: the one named, or `Info`.
    pub fn level(self) -> LevelFilter {
        match self {
            LevelOption::Taken(level) => level,
            LevelOption::Absent | LevelOption::NotALevel(_) => LevelFilter::Info,
        }
    }
}

/// Reads the command line's (first) `log=`.
pub fn level_option(command_line: &str) -> LevelOption<'_> {
    match crate::command_line::option(command_line, "log") {
        None => LevelOption::Absent,
        Some(value) => value.parse().map_or(LevelOption::NotALevel(value), LevelOption::Taken),
    }
}

/// What the command line's `dma.debug=` said: the DMA debugging mode (the
/// misuse log's checks) is on unless it says `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaDebugOption<'a> {
    /// No `dma.debug=`, or `dma.debug=on`.
    On,
    /// `dma.debug=off`.
    Off,
    /// Something else: debugging stays on, and the boot says so.
    NotOnOrOff(&'a str),
}

/// Reads the command line's (first) `dma.debug=`.
pub fn dma_debug_option(command_line: &str) -> DmaDebugOption<'_> {
    match crate::command_line::option(command_line, "dma.debug") {
        None | Some("on") => DmaDebugOption::On,
        Some("off") => DmaDebugOption::Off,
        Some(other) => DmaDebugOption::NotOnOrOff(other),
    }
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

    #[test]
    fn a_log_level_or_dma_debug_value_not_known_is_refused_by_name() {
        assert_eq!(level_option("quiet"), LevelOption::Absent);
        assert_eq!(level_option("log=warn"), LevelOption::Taken(LevelFilter::Warn));
        assert_eq!(level_option("log=nonsense x"), LevelOption::NotALevel("nonsense"));
        assert_eq!(level_option("log="), LevelOption::NotALevel(""));
        assert_eq!(dma_debug_option("log=info"), DmaDebugOption::On);
        assert_eq!(dma_debug_option("dma.debug=on"), DmaDebugOption::On);
        assert_eq!(dma_debug_option("a dma.debug=off"), DmaDebugOption::Off);
        assert_eq!(dma_debug_option("dma.debug=0"), DmaDebugOption::NotOnOrOff("0"));
        assert_eq!(dma_debug_option("dma.debug=OFF"), DmaDebugOption::NotOnOrOff("OFF"));
    }
}
