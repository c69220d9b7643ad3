//! `dma.bounce_pages=N` on the kernel command line: the bounce budget it asks
//! for, and the log line that says what was taken or refused. Pure, so it is
//! tested on the host; `init` applies it.

use alloc::format;
use alloc::string::String;

use crate::memory::FRAME_SIZE;

/// What the command line says of the bounce budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BouncePagesOption<'a> {
    /// No `dma.bounce_pages=` word: the default budget stays.
    Absent,
    /// A page count the budget takes.
    Taken(usize),
    /// A value that is not a page count: the default budget stays.
    Rejected {
        /// The text after `=`, as typed.
        value: &'a str,
        /// What is wrong with it.
        reason: Refusal,
    },
}

/// Why a `dma.bounce_pages=` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing after `=`.
    Empty,
    /// Something other than decimal digits (`8k`, `0x8`, `-1`, `abc`).
    NotDecimalDigits,
    /// More pages than a 64-bit address space holds.
    TooLarge,
}

/// The word that sets the budget.
const KEY: &str = "dma.bounce_pages";

/// The most pages a budget may have: their bytes must fit in 64 bits.
const MOST_PAGES: u64 = u64::MAX / FRAME_SIZE;

/// What `command_line` asks of the bounce budget. The first
/// `dma.bounce_pages=` word counts.
pub fn bounce_pages_option(command_line: &str) -> BouncePagesOption<'_> {
    let Some(value) = crate::command_line::option(command_line, KEY) else {
        return BouncePagesOption::Absent;
    };
    let refused = |reason| BouncePagesOption::Rejected { value, reason };
    if value.is_empty() {
        return refused(Refusal::Empty);
    }
    // `usize::from_str` takes a leading `+`: only digits are a page count here.
    if !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return refused(Refusal::NotDecimalDigits);
    }
    match value.parse::<u64>() {
        Ok(pages) if pages <= MOST_PAGES => match usize::try_from(pages) {
            Ok(pages) => BouncePagesOption::Taken(pages),
            Err(_) => refused(Refusal::TooLarge),
        },
        // Digits only, so the one way to fail is a number past u64.
        _ => refused(Refusal::TooLarge),
    }
}

/// The log line for `option`, with `default` pages in force when it takes
/// nothing; `None` when there is nothing to say (no option given).
pub fn bounce_pages_report(option: BouncePagesOption<'_>, default: usize) -> Option<String> {
    match option {
        BouncePagesOption::Absent => None,
        BouncePagesOption::Taken(pages) => Some(format!(
            "DMA: bounce budget {}, from {KEY}={pages}; the default is {}",
            pages_and_bytes(pages),
            pages_and_bytes(default)
        )),
        BouncePagesOption::Rejected { value, reason } => {
            let why = match reason {
                Refusal::Empty => "no page count after '='",
                Refusal::NotDecimalDigits => "a page count is decimal digits only (no K/M suffix, no 0x, no sign)",
                Refusal::TooLarge => "more pages than a 64-bit address space holds",
            };
            Some(format!("DMA: {KEY}={value} refused: {why}; the bounce budget stays {}", pages_and_bytes(default)))
        }
    }
}

/// `8 pages (32 KiB)`, `4096 pages (16 MiB)`.
fn pages_and_bytes(pages: usize) -> String {
    let kib = pages as u64 * (FRAME_SIZE / 1024);
    let bytes =
        if kib >= 1024 && kib.is_multiple_of(1024) { format!("{} MiB", kib / 1024) } else { format!("{kib} KiB") };
    format!("{pages} page{} ({bytes})", if pages == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decimal_page_count_is_taken_and_said() {
        assert_eq!(bounce_pages_option("log=info dma.bounce_pages=8 dma.debug=off"), BouncePagesOption::Taken(8));
        assert_eq!(bounce_pages_option("dma.bounce_pages=0"), BouncePagesOption::Taken(0));
        assert_eq!(bounce_pages_option("dma.bounce_pages=4503599627370495"), BouncePagesOption::Taken((1 << 52) - 1));
        assert_eq!(
            bounce_pages_report(BouncePagesOption::Taken(1), 4096).as_deref(),
            Some("DMA: bounce budget 1 page (4 KiB), from dma.bounce_pages=1; the default is 4096 pages (16 MiB)")
        );
        assert_eq!(bounce_pages_option("log=info"), BouncePagesOption::Absent);
        assert_eq!(bounce_pages_report(BouncePagesOption::Absent, 4096), None, "the default needs no line");
        assert_eq!(
            bounce_pages_report(BouncePagesOption::Taken(8), 4096).as_deref(),
            Some("DMA: bounce budget 8 pages (32 KiB), from dma.bounce_pages=8; the default is 4096 pages (16 MiB)")
        );
    }

    #[test]
    fn anything_but_a_decimal_page_count_is_refused_not_ignored() {
        let refused = |value, reason| BouncePagesOption::Rejected { value, reason };
        for value in ["8k", "0x8", "-1", "abc", "+8", "8.0"] {
            let line = alloc::format!("dma.bounce_pages={value}");
            assert_eq!(bounce_pages_option(&line), refused(value, Refusal::NotDecimalDigits), "{value:?}");
        }
        assert_eq!(bounce_pages_option("dma.bounce_pages="), refused("", Refusal::Empty));
        let huge = "99999999999999999999";
        assert_eq!(bounce_pages_option("dma.bounce_pages=99999999999999999999"), refused(huge, Refusal::TooLarge));
        // Fits in a u64 but its bytes do not: 2^52 pages of 4 KiB are 2^64 bytes.
        assert_eq!(
            bounce_pages_option("dma.bounce_pages=4503599627370496"),
            refused("4503599627370496", Refusal::TooLarge)
        );
        assert_eq!(
            bounce_pages_report(refused("8k", Refusal::NotDecimalDigits), 4096).as_deref(),
            Some(
                "DMA: dma.bounce_pages=8k refused: a page count is decimal digits only (no K/M suffix, no 0x, \
                 no sign); the bounce budget stays 4096 pages (16 MiB)"
            )
        );
        assert_eq!(
            bounce_pages_report(refused(huge, Refusal::TooLarge), 4096).as_deref(),
            Some(
                "DMA: dma.bounce_pages=99999999999999999999 refused: more pages than a 64-bit address space \
                 holds; the bounce budget stays 4096 pages (16 MiB)"
            )
        );
        assert_eq!(
            bounce_pages_report(refused("", Refusal::Empty), 8).as_deref(),
            Some("DMA: dma.bounce_pages= refused: no page count after '='; the bounce budget stays 8 pages (32 KiB)")
        );
    }
}
