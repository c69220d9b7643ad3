//! Step-by-step tracing of DMA commands, for learners: what prepare planned and
//! why, which bytes were copied where, which segments the device got.
//!
//! Off by default. The kernel points the output at the console ([`set_sink`]);
//! the shell's `trace on` and `dma read ... --trace` turn it on.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;

static ENABLED: AtomicBool = AtomicBool::new(false);
static SINK: Once<fn(fmt::Arguments)> = Once::new();

/// Where trace lines go (the first call wins).
pub fn set_sink(sink: fn(fmt::Arguments)) {
    SINK.call_once(|| sink);
}

/// Turns tracing on or off; returns the previous setting.
pub fn set_enabled(enabled: bool) -> bool {
    ENABLED.swap(enabled, Ordering::AcqRel)
}

/// Whether tracing is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Writes one trace line (the sink adds the newline) if tracing is on.
pub fn emit(arguments: fmt::Arguments) {
    if let (true, Some(sink)) = (enabled(), SINK.get()) {
        sink(arguments);
    }
}

/// Emits a trace line when tracing is on; the arguments are not even formatted
/// otherwise.
macro_rules! dma_trace {
    ($($argument:tt)*) => {
        if $crate::dma::trace::enabled() {
            $crate::dma::trace::emit(format_args!($($argument)*));
        }
    };
}
pub(crate) use dma_trace;
