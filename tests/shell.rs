//! Test kernel: the serial shell, driven by scripted input, its output captured.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use alloc::vec;

use dmakit::digest::sha256_hex;
use dmakit::shell::{ScriptInput, run};
use dmakit::{driver, pattern, println, serial};
use spin::Once;

dmakit::test_kernel!(
    bad_input_gets_a_message_not_a_panic,
    backspace_edits_the_line,
    read_prints_the_sha256_of_exactly_the_requested_sectors,
    dma_read_with_32_bits_above_4_gib_reports_bounced_segments,
    force_double_buffer_reports_a_fresh_page_aligned_buffer,
    trace_on_shows_each_step,
    stop_and_start_a_disk_from_the_shell,
    bench_with_a_queue_depth_reports_each_disk,
    queue_shows_the_order_the_device_finished_in,
    experiments_show_stale_bytes_and_leave_the_disk_as_it_was,
    crossing_64_kib_gives_one_region_across_the_line,
    no_bounce_lands_the_data_4_gib_lower_on_the_canary,
    synchronize_lets_the_cpu_look_early_and_hands_changes_back,
    an_early_synchronize_out_overwrites_what_the_device_wrote,
    a_packet_read_without_synchronize_in_is_stale_where_the_cpu_and_device_do_not_share_bytes,
    dma_step_pauses_at_each_step_of_a_read,
    extra_arguments_are_refused_with_a_usage_message,
    a_write_pattern_that_starts_with_a_digit_is_a_byte,
    dump_shows_the_bytes_asked_for_and_refuses_the_rest,
    the_line_editor_recalls_abandons_and_refuses,
    lsblk_mem_stats_and_help_say_what_they_show,
);

static ATTACHED: Once<()> = Once::new();

/// Runs `script` through the shell and returns everything it printed.
fn shell(script: &str) -> String {
    ATTACHED.call_once(|| driver::attach(&dmakit_drivers::all()));
    serial::start_capture();
    run(&mut ScriptInput(script.as_bytes().iter()));
    serial::take_capture()
}

fn bad_input_gets_a_message_not_a_panic() {
    let output = shell(
        "bogus\nread\nread vdz 0 1\nread hda x 1\nread hda 32767 2\nread hda 0 0\nwrite vda 0 1 300\n\
         dma read hda 0 1 --bits 8\ndma read hda 0 1 --boundary 1000\ndma read hda 0 1 --fast\ndma\ntrace maybe\n\
         read v\u{e9}da 0 1\nread hda 18446744073709551615 1\n",
    );
    for expected in [
        "error: unknown command 'bogus': type help",
        "error: usage: read DEV LBA COUNT",
        "error: no disk called 'vdz' (try lsblk)",
        "error: bad number 'x' for LBA",
        "error: sectors 32767..32769 are past the end of hda (32768 sectors)",
        "error: COUNT must be 1 to 2048, not 0",
        "error: pattern '300' starts with a digit, so it must be a byte 0 to 255",
        "error: --bits must be 12..=64, not 8",
        "error: --boundary must be a power of two, not 1000",
        "error: unknown option '--fast' (see help)",
        "error: usage: dma read DEV LBA COUNT [options], or dma step (see help)",
        "error: usage: trace on|off",
        "error: the line had byte 0xc3, which the shell does not take (printable ASCII only): not run",
        "error: LBA 18446744073709551615 is past the end of hda: its 32768 sectors are LBA 0 to 32767",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
}

fn backspace_edits_the_line() {
    let output = shell("lsbz\x7flk\n");
    assert!(output.contains("NAME") && output.contains("hda") && output.contains("vda"), "{output}");
}

/// The hex after "sha256 " in `output`.
fn printed_sha256(output: &str) -> &str {
    let start = output.find("sha256 ").expect("a sha256 line") + 7;
    &output[start..start + 64]
}

fn read_prints_the_sha256_of_exactly_the_requested_sectors() {
    let output = shell("read vda 3 5\n");
    let mut expected = vec![0u8; 5 * 512];
    pattern::fill(3, b'V', &mut expected);
    assert_eq!(printed_sha256(&output), sha256_hex(&expected), "{output}");
    assert!(output.contains("000000  03 00 00 00 00 00 00 00 44 4d 41 4b 49 54 56 0a"), "{output}");
    // And the runner compares it with the image file itself.
    println!("host-check virtio 3 5 {}", printed_sha256(&output));
}

fn dma_read_with_32_bits_above_4_gib_reports_bounced_segments() {
    let output = shell("dma read vda 0 8 --bits 32 --above-4g\n");
    assert!(output.contains("(above 4 GiB)"), "{output}");
    assert!(output.contains("bounced: 4096 bytes came back through bounce buffers"), "{output}");
    let segment_line = output.lines().find(|line| line.starts_with("  0x")).expect("a segment line");
    let address = u64::from_str_radix(segment_line.trim().trim_start_matches("0x").split(' ').next().unwrap_or(""), 16);
    assert!(address.is_ok_and(|address| address < 1 << 32), "{segment_line}");
}

fn force_double_buffer_reports_a_fresh_page_aligned_buffer() {
    let output = shell("dma read hda 8 16 --force-double-buffer\n");
    assert!(output.contains("force-double-buffer: the transfer used one fresh page-aligned buffer"), "{output}");
    assert!(output.contains("bounced: 8192 bytes"), "{output}");
}

fn trace_on_shows_each_step() {
    let output = shell("trace on\nread hda 0 1\ntrace off\nread hda 0 1\n");
    assert_eq!(output.matches("prepare: command").count(), 1, "only the traced read: {output}");
    assert!(output.contains("complete: command"), "{output}");
}

fn stop_and_start_a_disk_from_the_shell() {
    let output = shell("stop hda\nread hda 0 1\nstop hda\nstart hda\nread hda 0 1\nstart hda\nstop\nstats\n");
    for expected in [
        "hda stopped: 0 request(s) in flight finished, 0 aborted, 0 command(s) left prepared",
        "error: read failed: kIOReturnNotReady (0xe00002d8): the driver is stopped; `start` starts it again",
        "error: hda: kIOReturnNotPermitted (0xe00002e2): the driver is stopped already",
        "hda started",
        "error: hda: kIOReturnBusy (0xe00002d5): the driver is running already",
        "error: usage: stop DEV",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    assert_eq!(output.matches("sha256 ").count(), 1, "only the read after start ran: {output}");
    let queue = output.lines().find(|line| line.starts_with("hda: depth 1,")).expect("hda's queue line");
    assert!(queue.contains("in flight 0, queued 0"), "{queue}");
}

fn bench_with_a_queue_depth_reports_each_disk() {
    let output = shell("bench --qd 4\nbench --qd 0\nbench --qd x\n");
    for disk in ["vda", "hda"] {
        let line = output.lines().find(|line| line.starts_with(&alloc::format!("{disk}: queue depth 4:")));
        let line = line.unwrap_or_else(|| panic!("no {disk} line in:\n{output}"));
        assert!(line.contains("MB/s") && line.contains("IOPS"), "{line}");
    }
    assert!(output.contains("error: --qd must be 1 to 256, not 0"), "{output}");
    assert!(output.contains("error: --qd takes a number, not 'x'"), "{output}");
}

fn queue_shows_the_order_the_device_finished_in() {
    let output = shell("queue sda 16\nqueue hda 4\nqueue sda 0\nqueue\n");
    let order = |disk: &str| -> alloc::vec::Vec<u64> {
        let from = output.find(&alloc::format!("4 KiB {disk} ")).expect("the disk's report");
        let line = output[from..].lines().find(|line| line.starts_with("finished in this order: ")).expect("order");
        line.trim_start_matches("finished in this order: ").split(' ').map(|n| n.parse().expect("a number")).collect()
    };
    let mut sda = order("to sda");
    sda.sort_unstable();
    assert_eq!(sda, (1..=16).collect::<alloc::vec::Vec<u64>>(), "every read finished once: {output}");
    assert_eq!(order("to hda"), [1, 2, 3, 4], "one at a time finishes in order: {output}");
    assert!(output.contains("error: N must be 1 to 64, not 0"), "{output}");
    assert!(output.contains("error: usage: queue DEV N"), "{output}");
}

fn experiments_show_stale_bytes_and_leave_the_disk_as_it_was() {
    let before = shell("read hda 40 2\n");
    let output = shell("experiment skip-copy-back hda 40 2\nexperiment skip-fill hda 40 2\nexperiment skip-fill\n");
    assert!(output.contains("your buffer after the read:   5a 5a 5a 5a"), "{output}");
    assert!(output.contains("the same read with the copy:  28 00 00 00"), "sector 40's first bytes: {output}");
    assert!(output.contains("1024 of 1024 bytes still held 0x5a"), "{output}");
    assert!(output.contains("the sectors were put back as they were."), "{output}");
    let wrote = output.lines().find(|line| line.contains("bytes are what you wrote")).expect("the fill's report");
    assert!(!wrote.starts_with("1024 of"), "the disk got the bounce frames' bytes: {wrote}");
    assert!(output.contains("error: usage: experiment skip-copy-back|skip-fill DEV LBA COUNT"), "{output}");
    let after = shell("read hda 40 2\n");
    assert_eq!(printed_sha256(&before), printed_sha256(&after), "the experiments left the sectors as they were");
}

/// The first line of `output` that starts with `start`, and the hex numbers in it.
fn line_and_hex_numbers<'a>(output: &'a str, start: &str) -> (&'a str, alloc::vec::Vec<u64>) {
    let line = output.lines().find(|line| line.starts_with(start));
    let line = line.unwrap_or_else(|| panic!("no line starting {start:?} in:\n{output}"));
    let numbers = line
        .split([' ', ':'])
        .filter_map(|word| word.strip_prefix("0x"))
        .filter_map(|hex| u64::from_str_radix(hex, 16).ok())
        .collect();
    (line, numbers)
}

fn crossing_64_kib_gives_one_region_across_the_line() {
    let output = shell("experiment cross-64k hda 100\nexperiment cross-64k vda 100\n");
    let (region, numbers) = line_and_hex_numbers(&output, "the controller got a region of 0x10000 bytes at");
    let (start, line) = (numbers[1], numbers[2]);
    assert!(start < line && line < start + 0x10000 && line % 0x10000 == 0, "{region}");
    assert!(output.contains("QEMU got the data right"), "{output}");
    assert!(output.contains("vda's device has no boundary rule"), "{output}");
}

fn no_bounce_lands_the_data_4_gib_lower_on_the_canary() {
    let output = shell("experiment no-bounce hda 16\n");
    // On q35 the IDE controller sits behind the IOMMU: it is given IOVAs it
    // reaches, so nothing is cut and the experiment says so.
    let behind_iommu = dmakit::pci::enumerate()
        .into_iter()
        .find(|function| (function.vendor_id, function.device_id) == (0x8086, 0x7010))
        .is_some_and(|function| dmakit::iommu::mapper_for(function.requester_id()).is_some());
    if behind_iommu {
        assert!(output.contains("hda's device reaches the buffer (64-bit, or behind an IOMMU)"), "{output}");
        return;
    }
    let (given, numbers) = line_and_hex_numbers(&output, "the controller was given 0x");
    assert_eq!(numbers[0], numbers[1] - (1 << 32), "cut to 32 bits: {given}");
    // Sector 16 of the pattern image starts with its number, then "DMAKITA".
    assert!(output.contains("the canary page now:  10 00 00 00 00 00 00 00 44 4d 41 4b"), "{output}");
    assert!(output.contains("your buffer now:      5a 5a 5a 5a"), "{output}");
}

fn extra_arguments_are_refused_with_a_usage_message() {
    let output = shell(
        "lsblk foo\nmem x\nstats 1\nioreg x\nhelp x\npoweroff now\nbench --qd 4 x\nread hda 0 1 2\n\
         write hda 0 1 7 8\ndma read hda 0 1 --boundary 256\nqueue hda 1 2\nstop hda now\n",
    );
    for expected in [
        "error: usage: lsblk (no arguments; got 'foo')",
        "error: usage: mem (no arguments; got 'x')",
        "error: usage: stats (no arguments; got '1')",
        "error: usage: ioreg (no arguments; got 'x')",
        "error: usage: help (no arguments; got 'x')",
        "error: usage: poweroff (no arguments; got 'now')",
        "error: usage: bench [--qd N] (got '--qd 4 x')",
        "error: usage: read DEV LBA COUNT",
        "error: usage: write DEV LBA COUNT PATTERN",
        "error: --boundary must be at least 512, not 256",
        "error: usage: queue DEV N",
        "error: usage: stop DEV",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    assert!(!output.contains("NAME"), "lsblk foo listed the disks: {output}");
    assert!(!output.contains("MB/s"), "bench with an extra word ran: {output}");
}

fn a_write_pattern_that_starts_with_a_digit_is_a_byte() {
    let output = shell("write hda 60 1 300x\nwrite hda 60 1 0x5a\nread hda 60 1\nwrite hda 61 1 x300\nread hda 61 1\n");
    assert!(
        output.contains(
            "error: pattern '300x' starts with a digit, so it must be a byte 0 to 255 (decimal or 0x..); \
             text must start with another character"
        ),
        "{output}"
    );
    assert!(output.contains("000000  5a 5a 5a 5a"), "{output}");
    assert!(output.contains("000000  78 33 30 30 78 33 30 30"), "x300 is text: {output}");
}

fn dump_shows_the_bytes_asked_for_and_refuses_the_rest() {
    let output = shell("dump vda 2 2 0x200 32\ndump vda 0 1\ndump vda 0 1 1000\ndump vda 0 1 500 13\ndump vda 0\n");
    // Sector 3 starts at offset 0x200 of what was read: its number, then DMAKITV.
    assert!(output.contains("000200  03 00 00 00 00 00 00 00 44 4d 41 4b 49 54 56 0a"), "{output}");
    assert!(output.contains("\n000210  "), "{output}");
    assert!(!output.contains("000220  "), "only 32 bytes: {output}");
    // Without OFFSET and LENGTH: the first 256 bytes, rows 0x00 to 0xf0.
    assert!(output.contains("\n0000f0  ") && !output.contains("\n000100  "), "{output}");
    for expected in [
        "error: OFFSET 1000 is past the 512 bytes read (COUNT 1 sectors)",
        "error: bytes 500..513 are not all in the 512 bytes read (COUNT 1 sectors); LENGTH must be 1 to 12",
        "error: usage: dump DEV LBA COUNT [OFFSET [LENGTH]]",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
}

fn the_line_editor_recalls_abandons_and_refuses() {
    let long = "x".repeat(300);
    let script = alloc::format!("lsblk\x03\nread\thda 0 1\n\x1b[A\r{long}\nmem\x15lsblk\n");
    let output = shell(&script);
    assert!(output.contains("lsblk^C\n"), "Ctrl-C shows ^C: {output}");
    assert_eq!(output.matches("sha256 ").count(), 2, "the tab split the words, and Up ran it again: {output}");
    assert!(output.contains("error: line longer than 256 characters: not run"), "{output}");
    assert!(!output.contains("unknown command 'xxx"), "the long line did not run: {output}");
    assert_eq!(output.matches("NAME").count(), 1, "only the lsblk after Ctrl-U ran: {output}");
    assert!(!output.contains("zone DMA"), "mem was erased by Ctrl-U: {output}");
}

fn lsblk_mem_stats_and_help_say_what_they_show() {
    let output = shell("lsblk\nmem\ndma read vda 0 8 --force-double-buffer\nstats\nhelp\n");
    let hda = output.lines().find(|line| line.starts_with("hda ")).expect("an hda line");
    assert!(hda.contains(" 16 MiB  "), "{hda}");
    let dma = output.lines().find(|line| line.starts_with("zone DMA ")).expect("the DMA zone");
    assert!(dma.contains("0x1000..0x1000000") || dma.contains("..0x1000000 "), "{dma}");
    let normal = output.lines().find(|line| line.starts_with("zone Normal")).expect("the Normal zone");
    assert!(normal.contains("0x100000000.."), "{normal}");
    assert!(output.contains("copied into bounce buffers "), "{output}");
    assert!(output.contains("copied out of bounce buffers "), "{output}");
    let forced = output.lines().find(|line| line.starts_with("forced double buffers ")).expect("forced line");
    assert_ne!(forced.split_whitespace().nth(3), Some("0"), "the forced read was counted: {forced}");
    assert!(output.contains("poweroff | exit | quit"), "{output}");
    assert!(output.contains("dump DEV LBA COUNT [OFFSET [LENGTH]]"), "{output}");
}

fn synchronize_lets_the_cpu_look_early_and_hands_changes_back() {
    let output = shell("experiment synchronize\n");
    for expected in [
        "   the CPU looks at its buffer:     refused: the device owns this memory until the transfer completes",
        "   the bounce buffer now holds:     22 22 22 22 22 22 22 22 ... (the CPU's buffer still holds 0x11)",
        "4. synchronize(In): bounce -> buffer; the CPU may look now, before complete:\n   the CPU looks at its buffer:     22 22",
        "   the device reads its segment:    22 22 22 22 22 22 22 22 ... (still the old bytes)",
        "6. synchronize(Out): buffer -> bounce; the device reads: 33 33 33 33",
        "7. the device writes 0x44, then the driver completes the transfer\n   the CPU looks at its buffer:     44 44",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
}

fn an_early_synchronize_out_overwrites_what_the_device_wrote() {
    let output = shell("experiment early-sync\n");
    for expected in [
        "3. it gives the buffer back with synchronize(Out): the CPU's whole buffer -> bounce buffer\n   the bounce buffer at 16..32:   11 11",
        "   the frame the CPU got: 2032 of its 4096 bytes are not the device's",
        "3. it gives the buffer back with synchronize_range(Out, 0, 0): nothing is copied\n   the bounce buffer at 16..32:   22 22",
        "   the frame the CPU got: 0 of its 4096 bytes are not the device's",
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
}

fn a_packet_read_without_synchronize_in_is_stale_where_the_cpu_and_device_do_not_share_bytes() {
    let output = shell("experiment skip-sync-rx\n");
    let noncoherent = output.contains("does not snoop the CPU's caches (dma.coherence=noncoherent)");
    let in_place = match noncoherent {
        true => "without synchronize(In) the driver reads: 11 11",
        false => "without synchronize(In) the driver reads: 22 22",
    };
    for expected in [
        "a bounce buffer; the device wrote the packet and reported 1500 bytes\n   without synchronize(In) the driver reads: 11 11",
        in_place,
    ] {
        assert!(output.contains(expected), "missing {expected:?} in:\n{output}");
    }
    assert_eq!(output.matches("after synchronize_range(In, 0, 1500):   22 22").count(), 2, "{output}");
}

fn dma_step_pauses_at_each_step_of_a_read() {
    let output = shell("dma continue\ndma step hda 8\ndma continue\ndma show\ndma sync in\ndma continue\ndma show\n");
    let steps: alloc::vec::Vec<&str> = output.lines().filter(|line| line.starts_with("step ")).collect();
    assert_eq!(steps.len(), 3, "three steps: {output}");
    assert!(
        steps[0].starts_with("step 1 of 3, prepared") && steps[2].starts_with("step 3 of 3, completed"),
        "{output}"
    );
    assert!(output.contains("refused: the device owns this memory until the transfer completes"), "{output}");
    // After the device wrote, before complete: the CPU may not look, the bounce buffer holds sector 8.
    let done = &output[output.find("step 2 of 3").expect("step 2")..output.find("synchronize(In)").expect("sync in")];
    assert!(done.contains("the CPU's buffer:               refused"), "{done}");
    assert!(done.contains(": 08 00 00 00 00 00 00 00 ..."), "{done}");
    let synced = &output[output.find("synchronize(In)").expect("sync in")..];
    assert!(
        synced.contains("the CPU's buffer:               08 00 00 00 00 00 00 00"),
        "sync(In) let it look: {synced}"
    );
    assert!(output.contains("it holds the disk's sectors: yes"), "{output}");
    assert_eq!(output.matches("error: no transfer is being stepped").count(), 2, "before and after: {output}");
}
