//! Parsing shell input: numbers (decimal, `0x` hex, `K`/`M`/`G` suffixes), the
//! pattern of `write`, the options of `dma read`; and sizes for output. Pure, so
//! it is tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The first character of `line` the shell does not take: it takes printable
/// ASCII, space and tab, what its line editor lets through.
pub fn foreign_character(line: &str) -> Option<char> {
    line.chars().find(|&character| !(character == ' ' || character == '\t' || character.is_ascii_graphic()))
}

/// A number as the shell accepts it: `4096`, `0x1000`, `64K`, `1M`, `4G`.
pub fn number(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&text[..text.len() - 1], 1 << 20),
        b'G' | b'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => unsigned(hex, 16)?,
        None => unsigned(digits, 10)?,
    };
    value.checked_mul(multiplier)
}

/// `digits` read in `radix`, if they are digits only and fit in 64 bits:
/// `from_str_radix` alone also takes a leading `+`, so `+0` and `0x+10`
/// passed for numbers.
fn unsigned(digits: &str, radix: u32) -> Option<u64> {
    if !digits.chars().all(|character| character.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A number for the argument called `what`, or a message saying what is wrong.
pub fn argument(words: &[&str], index: usize, what: &str) -> Result<u64, String> {
    let word = words.get(index).ok_or_else(|| format!("missing {what}"))?;
    number(word).ok_or_else(|| format!("bad number '{word}' for {what}"))
}

/// The pattern of `write`. One rule, so that `300` and `300x` are not read two
/// ways: a word that starts with a digit is one byte, 0 to 255, in decimal or
/// `0x` hex (no `K`/`M`/`G`: a byte has no use for them); any other word is text,
/// written as its bytes.
pub fn pattern(word: &str) -> Result<Vec<u8>, String> {
    if !word.starts_with(|character: char| character.is_ascii_digit()) {
        return Ok(word.as_bytes().to_vec());
    }
    let value = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => unsigned(hex, 16),
        None => unsigned(word, 10),
    };
    value.and_then(|value| u8::try_from(value).ok()).map(|byte| alloc::vec![byte]).ok_or_else(|| {
        format!(
            "pattern '{word}' starts with a digit, so it must be a byte 0 to 255 (decimal or 0x..); \
             text must start with another character"
        )
    })
}

/// Checks that `count` sectors from `lba` lie on the disk `name` of `blocks`
/// sectors; the message says where they run off it, in numbers that hold (an
/// end past 2^64 is not printed as a range that ends where it starts).
pub fn sectors_on_disk(name: &str, lba: u64, count: u64, blocks: u64) -> Result<(), String> {
    match lba.checked_add(count) {
        Some(end) if end <= blocks => Ok(()),
        _ if blocks == 0 => Err(format!("{name} has no sectors (a 0-byte disk)")),
        _ if lba >= blocks => {
            Err(format!("LBA {lba} is past the end of {name}: its {blocks} sectors are LBA 0 to {}", blocks - 1))
        }
        Some(end) => Err(format!("sectors {lba}..{end} are past the end of {name} ({blocks} sectors)")),
        None => Err(format!(
            "LBA {lba} + {count} sectors runs past the end of {name} ({blocks} sectors): the last would be past LBA \
             2^64 - 1"
        )),
    }
}

/// `bytes` in the largest of B, KiB, MiB that it fills at least once: `512 B`,
/// `1.5 KiB`, `16 MiB`; one decimal (rounded down) when the unit does not divide it.
pub fn size(bytes: u64) -> String {
    let (unit, name) = match bytes {
        0..1024 => return format!("{bytes} B"),
        1024..0x10_0000 => (1024, "KiB"),
        _ => (0x10_0000, "MiB"),
    };
    let whole = bytes / unit;
    let tenths = bytes % unit * 10 / unit;
    if bytes.is_multiple_of(unit) { format!("{whole} {name}") } else { format!("{whole}.{tenths} {name}") }
}

/// The value of `--bits`, checked.
fn address_bits(bits: u64) -> Result<u8, String> {
    match bits {
        12..=64 => Ok(bits as u8),
        _ => Err(format!("--bits must be 12..=64, not {bits}")),
    }
}

/// What `queue` does once its reads are submitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Waiting {
    /// Waits for every read and says in which order they finished.
    #[default]
    ForAll,
    /// `--no-wait`: returns at once; the reads stay in flight, and the shell
    /// collects them later.
    NotAtAll,
}

/// The options of `queue DEV N [...]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// `--bits N`: address bits the device may drive, for these reads.
    pub bits: Option<u8>,
    /// `--above-4g`: every buffer above 4 GiB.
    pub above_4g: bool,
    /// `--no-wait`.
    pub waiting: Waiting,
    /// `--digest`: print the sha256 of the data read, in the order submitted
    /// (what `make soak` checks against the image on the host).
    pub digest: bool,
}

/// How `queue` is used.
pub const QUEUE_USAGE: &str = "usage: queue DEV N [--bits N] [--above-4g] [--no-wait] [--digest]";

/// Parses the words after `queue DEV N`.
pub fn queue_options(words: &[&str]) -> Result<QueueOptions, String> {
    let mut options = QueueOptions::default();
    let mut index = 0;
    while index < words.len() {
        match words[index] {
            "--bits" => {
                index += 1;
                options.bits = Some(address_bits(argument(words, index, "--bits")?)?);
            }
            "--above-4g" => options.above_4g = true,
            "--no-wait" => options.waiting = Waiting::NotAtAll,
            "--digest" => options.digest = true,
            other if other.starts_with("--") => return Err(format!("unknown option '{other}': {QUEUE_USAGE}")),
            _ => return Err(String::from(QUEUE_USAGE)),
        }
        index += 1;
    }
    Ok(options)
}

/// The options of `dma read DEV LBA COUNT [...]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaReadOptions {
    /// `--bits N`: address bits the device may drive.
    pub bits: Option<u8>,
    /// `--boundary N`: no segment crosses a multiple of N.
    pub boundary: Option<u64>,
    /// `--max-segment N`: bytes per segment.
    pub max_segment: Option<u64>,
    /// `--above-4g`: put the buffer above 4 GiB.
    pub above_4g: bool,
    /// `--force-double-buffer`.
    pub force_double_buffer: bool,
    /// `--trace`: show each step of this transfer.
    pub trace: bool,
    /// `--scatter N`: the buffer is N pages, none next to another in memory.
    pub scatter: Option<u64>,
}

/// The most pages `--scatter` takes: `dma read` moves at most 1 MiB.
pub const MOST_SCATTERED_PAGES: u64 = 256;

/// Parses the words after `DEV LBA COUNT`.
pub fn dma_read_options(words: &[&str]) -> Result<DmaReadOptions, String> {
    let mut options = DmaReadOptions::default();
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        let mut value = |what: &str| -> Result<u64, String> {
            index += 1;
            argument(words, index, what)
        };
        match word {
            "--bits" => options.bits = Some(address_bits(value("--bits")?)?),
            "--boundary" => {
                let boundary = value("--boundary")?;
                if !boundary.is_power_of_two() {
                    return Err(format!("--boundary must be a power of two, not {boundary}"));
                }
                // A segment holds whole sectors: a smaller boundary could cut one.
                if boundary < 512 {
                    return Err(format!("--boundary must be at least 512, not {boundary}"));
                }
                options.boundary = Some(boundary);
            }
            "--max-segment" => {
                let size = value("--max-segment")?;
                if size < 512 {
                    return Err(format!("--max-segment must be at least 512, not {size}"));
                }
                options.max_segment = Some(size);
            }
            "--above-4g" => options.above_4g = true,
            "--force-double-buffer" => options.force_double_buffer = true,
            "--trace" => options.trace = true,
            "--scatter" => {
                let pages = value("--scatter")?;
                if !(2..=MOST_SCATTERED_PAGES).contains(&pages) {
                    return Err(format!("--scatter must be 2 to {MOST_SCATTERED_PAGES} pages, not {pages}"));
                }
                options.scatter = Some(pages);
            }
            other => return Err(format!("unknown option '{other}' (see help)")),
        }
        index += 1;
    }
    Ok(options)
}

#[cfg(test)]
mod generated;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_every_form() {
        assert_eq!(number("4096"), Some(4096));
        assert_eq!(number("0x1000"), Some(4096));
        assert_eq!(number("64K"), Some(65536));
        assert_eq!(number("1M"), Some(1 << 20));
        assert_eq!(number("4g"), Some(1 << 32));
        for bad in ["", "K", "12x", "-1", "0x", "99999999999999999999", "17179869184G"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
        assert_eq!(argument(&["x"], 0, "LBA"), Err(String::from("bad number 'x' for LBA")));
    }

    #[test]
    fn a_sign_is_not_a_digit() {
        // The generated-input test found "+0" read as 0: `from_str_radix`
        // takes a leading `+`, in hex after the `0x` too.
        for signed in ["+0", "+4K", "0x+10", "0X+ff", "-1"] {
            assert_eq!(number(signed), None, "{signed:?}");
        }
        for signed in ["0x+5", "0+5"] {
            assert!(pattern(signed).is_err(), "{signed:?}");
        }
        assert_eq!(pattern("+5"), Ok(b"+5".to_vec()), "a word that starts with a sign is text");
        assert_eq!(argument(&[], 0, "LBA"), Err(String::from("missing LBA")));
    }

    #[test]
    fn dma_read_options_parse_and_reject() {
        let options = dma_read_options(&["--bits", "32", "--boundary", "64K", "--above-4g", "--trace"]).unwrap();
        assert_eq!(options.bits, Some(32));
        assert_eq!(options.boundary, Some(65536));
        assert!(options.above_4g && options.trace && !options.force_double_buffer);
        assert!(dma_read_options(&["--bits"]).is_err());
        assert!(dma_read_options(&["--bits", "8"]).is_err());
        assert!(dma_read_options(&["--boundary", "1000"]).is_err());
        assert!(dma_read_options(&["--max-segment", "100"]).is_err());
        assert_eq!(
            dma_read_options(&["--boundary", "256"]),
            Err(String::from("--boundary must be at least 512, not 256"))
        );
        assert_eq!(dma_read_options(&["--boundary", "512"]).unwrap().boundary, Some(512));
        assert_eq!(dma_read_options(&["--fast"]), Err(String::from("unknown option '--fast' (see help)")));
    }

    #[test]
    fn queue_takes_the_limits_of_dma_read_and_no_wait() {
        assert_eq!(queue_options(&[]), Ok(QueueOptions::default()));
        let options = queue_options(&["--above-4g", "--bits", "32", "--no-wait"]).unwrap();
        assert_eq!(options, QueueOptions { bits: Some(32), above_4g: true, waiting: Waiting::NotAtAll, digest: false });
        assert!(queue_options(&["--digest"]).unwrap().digest);
        assert_eq!(queue_options(&["--bits", "8"]), Err(String::from("--bits must be 12..=64, not 8")));
        assert_eq!(queue_options(&["--bits"]), Err(String::from("missing --bits")));
        assert_eq!(queue_options(&["2"]), Err(String::from(QUEUE_USAGE)), "a stray word is a usage error");
        assert!(QUEUE_USAGE.starts_with("usage: queue DEV N"));
        assert_eq!(
            queue_options(&["--fast"]),
            Err(String::from(
                "unknown option '--fast': usage: queue DEV N [--bits N] [--above-4g] [--no-wait] [--digest]"
            ))
        );
    }

    #[test]
    fn scatter_takes_a_page_count() {
        assert_eq!(dma_read_options(&["--scatter", "8"]).unwrap().scatter, Some(8));
        assert_eq!(dma_read_options(&["--bits", "32"]).unwrap().scatter, None);
        assert_eq!(dma_read_options(&["--scatter", "1"]), Err(String::from("--scatter must be 2 to 256 pages, not 1")));
        assert_eq!(
            dma_read_options(&["--scatter", "257"]),
            Err(String::from("--scatter must be 2 to 256 pages, not 257"))
        );
        assert_eq!(dma_read_options(&["--scatter"]), Err(String::from("missing --scatter")));
    }

    #[test]
    fn a_pattern_that_starts_with_a_digit_is_a_byte() {
        assert_eq!(pattern("0"), Ok(alloc::vec![0]));
        assert_eq!(pattern("255"), Ok(alloc::vec![255]));
        assert_eq!(pattern("0xa5"), Ok(alloc::vec![0xa5]));
        assert_eq!(pattern("dmakit"), Ok(b"dmakit".to_vec()));
        assert_eq!(pattern("x300"), Ok(b"x300".to_vec()));
        for bad in ["256", "300", "300x", "1K", "0x100", "0x", "9lives"] {
            let message = pattern(bad).unwrap_err();
            assert!(message.starts_with(&format!("pattern '{bad}' starts with a digit")), "{message}");
        }
    }

    #[test]
    fn sectors_off_the_disk_are_said_in_numbers_that_hold() {
        assert_eq!(sectors_on_disk("vda", 0, 1, 32768), Ok(()));
        assert_eq!(sectors_on_disk("vda", 32767, 1, 32768), Ok(()));
        assert_eq!(
            sectors_on_disk("hda", 32767, 2, 32768),
            Err(String::from("sectors 32767..32769 are past the end of hda (32768 sectors)"))
        );
        // The end of the range does not fit in 64 bits: no `..` range is printed.
        assert_eq!(
            sectors_on_disk("vda", u64::MAX, 1, 32768),
            Err(String::from("LBA 18446744073709551615 is past the end of vda: its 32768 sectors are LBA 0 to 32767"))
        );
        assert_eq!(
            sectors_on_disk("vda", 32768, 1, 32768),
            Err(String::from("LBA 32768 is past the end of vda: its 32768 sectors are LBA 0 to 32767"))
        );
        assert_eq!(
            sectors_on_disk("vdb", u64::MAX - 1, 8, u64::MAX),
            Err(String::from(
                "LBA 18446744073709551614 + 8 sectors runs past the end of vdb (18446744073709551615 sectors): \
                 the last would be past LBA 2^64 - 1"
            ))
        );
        assert_eq!(sectors_on_disk("vdc", 0, 1, 0), Err(String::from("vdc has no sectors (a 0-byte disk)")));
    }

    #[test]
    fn only_printable_ascii_space_and_tab_are_taken() {
        assert_eq!(foreign_character("read vda 0 1\t--trace ~!"), None);
        assert_eq!(foreign_character("read v\u{e9}da 0 1"), Some('\u{e9}'));
        assert_eq!(foreign_character("lsblk\r"), Some('\r'));
        assert_eq!(foreign_character("mem\u{7f}"), Some('\u{7f}'));
    }

    #[test]
    fn sizes_pick_their_unit() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1024 * 1023), "1023 KiB");
        assert_eq!(size(16 << 20), "16 MiB");
        assert_eq!(size((2 << 20) + 512 * 1024), "2.5 MiB");
        assert_eq!(size(64 << 30), "65536 MiB");
    }
}
