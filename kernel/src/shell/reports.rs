//! What `stats` and `net` print, as lines: the shell prints them, and the
//! network stack sends them to whoever connects to TCP port 11.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::dma::DmaPlatform;
use crate::dma::kernel_platform::platform;
use crate::driver;
use crate::net::Interrupts;
use crate::net::registry;

/// `stats`: the bounce accounting, then each disk's queue.
pub fn stats_lines() -> Vec<String> {
    let stats = platform().accounting().stats();
    // One column of labels, so that the counts line up.
    let rows = [
        ("bounced transfers", format!("{}", stats.bounced_transfers)),
        ("direct transfers", format!("{}", stats.direct_transfers)),
        (
            "forced double buffers",
            format!("{} (synchronize(ForceDoubleBuffer); also counted above at prepare)", stats.forced_double_buffers),
        ),
        ("copied into bounce buffers", format!("{} bytes in {} copies", stats.bytes_to_bounce, stats.copies_to_bounce)),
        (
            "copied out of bounce buffers",
            format!("{} bytes in {} copies", stats.bytes_from_bounce, stats.copies_from_bounce),
        ),
        ("bounce pages in use", format!("{} of {}", stats.pages_in_use, stats.page_limit)),
        ("prepared commands", format!("{}", stats.prepared_commands)),
    ];
    let mut lines: Vec<String> = rows.iter().map(|(label, value)| format!("{label:<28} {value}")).collect();
    lines.push(format!(
        "leaked (device could not be stopped) {} page(s) in {} transfer(s)",
        stats.leaked_pages, stats.leaked_transfers
    ));
    for (name, disk) in driver::block_devices() {
        let queue = disk.stats();
        lines.push(format!(
            "{name}: depth {}, in flight {}, queued {}, deepest {}, finished {} ({} failed), \
             deferred loads {}, out of order {}, interrupts {}, resets {}",
            queue.depth,
            queue.in_flight,
            queue.queued,
            queue.deepest,
            queue.finished,
            queue.failed,
            queue.deferred_loads,
            queue.out_of_order,
            queue.interrupts,
            queue.resets
        ));
        let counters = disk.driver_counters();
        if !counters.is_empty() {
            let counts: Vec<String> = counters.iter().map(|(name, count)| format!("{name} {count}")).collect();
            lines.push(format!("{name}: {} commands by data pointer: {}", disk.driver_name(), counts.join(", ")));
        }
    }
    lines
}

/// A ratio with two decimals, without floating point.
fn per(count: u64, packets: u64) -> String {
    let hundredths = (count * 100).checked_div(packets).unwrap_or(0);
    format!("{}.{:02}", hundredths / 100, hundredths % 100)
}

/// `net`: each interface's packets and the DMA work they cost, and the stack.
pub fn net_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let interfaces = registry::all();
    if interfaces.is_empty() {
        lines.push(String::from("no network interface (make run attaches one: NET=user)"));
    }
    for interface in interfaces {
        let stats = interface.stats();
        let mac = interface.mac().iter().map(|byte| format!("{byte:02x}")).collect::<Vec<_>>().join(":");
        let (interrupts, wanted) = interface.interrupts();
        let woken = match wanted {
            Interrupts::Wanted => format!("{interrupts} interrupts"),
            Interrupts::Suppressed => String::from("polled, no interrupts"),
        };
        let packets = stats.packets_received + stats.packets_transmitted;
        lines.push(format!("{}: mac {mac}, {woken}", interface.name()));
        lines.push(format!(
            "  received {} frames ({} bytes), transmitted {} frames ({} bytes), dropped {}, transmit ring full {}",
            stats.packets_received,
            stats.bytes_received,
            stats.packets_transmitted,
            stats.bytes_transmitted,
            stats.dropped,
            stats.transmit_ring_full
        ));
        lines.push(format!(
            "  buffers prepared {} (all when the interface started), synchronizes {}, bytes copied by them {}",
            stats.prepares, stats.synchronizes, stats.bytes_copied_by_synchronize
        ));
        lines.push(format!(
            "  per packet: {} synchronizes, {} bytes copied, 0 prepares",
            per(stats.synchronizes, packets),
            per(stats.bytes_copied_by_synchronize, packets)
        ));
        if let Some(failure) = stats.last_drop {
            lines.push(format!("  last drop: {failure}"));
        }
    }
    if let Some((address, name, stats)) = crate::net::stack::stats() {
        let [a, b, c, d] = address.address;
        let [g, h, i, j] = address.gateway;
        lines.push(format!(
            "stack on {name}: {a}.{b}.{c}.{d}/{} via {g}.{h}.{i}.{j}; udp echo (port 7) {} datagrams ({} not echoed), \
             tcp echo (port 7) {} connections {} bytes, reports (port 11) {}, frames lost on transmit {}, \
             on receive {}",
            address.prefix,
            stats.counts.udp_echoed,
            stats.counts.udp_not_echoed,
            stats.counts.tcp_connections,
            stats.counts.tcp_echoed_bytes,
            stats.counts.reports,
            stats.transmit_failures,
            stats.receive_overflows
        ));
    }
    if let Some((since, slept)) = crate::net::stack::sleep_share() {
        lines.push(format!(
            "the CPU slept {}% of the {} ms since the stack started (the rest: serving, and commands)",
            (slept * 100).checked_div(since).unwrap_or(0),
            since / 1_000_000
        ));
    }
    lines
}

/// What TCP port 11 sends: `net`, then `stats`.
pub fn report() -> String {
    let mut text = String::new();
    for line in net_lines().into_iter().chain(stats_lines()) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}
