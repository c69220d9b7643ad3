//! The shell's parsers fed generated input: arbitrary text (non-ASCII, huge
//! numbers, `0x`/`0b` prefixes, signs), number-shaped text, word lists made of
//! the options and junk, and sector ranges at the edges of `u64`. None may
//! panic; where a small reference says what the answer must be, it is checked.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::test_support::generated_input_config;

/// What `number` must give, written out from its documented grammar: decimal
/// digits or `0x`/`0X` and hex digits, then at most one of `K`, `M`, `G` (either
/// case); the value must fit in 64 bits after the multiplier.
fn reference_number(text: &str) -> Option<u64> {
    let (digits, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let (digits, radix) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|character| character.is_digit(radix)) {
        return None;
    }
    let value = digits.chars().try_fold(0u128, |value, character| {
        let next = value * u128::from(radix) + u128::from(character.to_digit(radix)?);
        (next <= u128::from(u64::MAX)).then_some(next)
    })?;
    u64::try_from(value << shift).ok()
}

/// What `pattern` must give for a word that starts with a digit: one byte in
/// decimal or `0x` hex, written with digits only.
fn reference_byte(word: &str) -> Option<u8> {
    let (digits, radix) = match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (word, 10),
    };
    if digits.is_empty() || !digits.chars().all(|character| character.is_digit(radix)) {
        return None;
    }
    digits
        .chars()
        .try_fold(0u16, |value, character| {
            let next = value * radix as u16 + character.to_digit(radix)? as u16;
            (next <= 0xff).then_some(next)
        })?
        .try_into()
        .ok()
}

/// Characters of numbers and patterns, their near misses, and the shell's
/// foreign characters.
const NUMBER_CHARACTERS: &[char] = &[
    '0',
    '1',
    '7',
    '9',
    'a',
    'f',
    'A',
    'F',
    'g',
    'x',
    'X',
    'b',
    'k',
    'K',
    'M',
    '+',
    '-',
    '_',
    '.',
    ' ',
    '\t',
    '\r',
    '\u{7f}',
    '\u{e9}',
    '\u{2028}',
    '\u{1f600}',
];

/// Text: a prefix (`0x`, `0b`, a sign...), characters mostly from
/// [`NUMBER_CHARACTERS`] (digits often, so huge numbers too) and sometimes any
/// character, then a suffix.
fn text() -> impl Strategy<Value = String> {
    let character = prop_oneof![
        4 => prop::sample::select(&['0', '1', '5', '9'][..]),
        4 => prop::sample::select(NUMBER_CHARACTERS),
        1 => any::<char>(),
    ];
    (
        prop::sample::select(&["", "", "0x", "0X", "0b", "+", "-", "0x+", "0x-"][..]),
        prop::collection::vec(character, 0..24),
        prop::sample::select(&["", "", "K", "k", "M", "m", "G", "g", "x", "\u{e9}"][..]),
    )
        .prop_map(|(prefix, characters, suffix)| {
            let mut text = String::from(prefix);
            text.extend(characters);
            text.push_str(suffix);
            text
        })
}

/// A word of `queue` or `dma read`: an option, a value, or junk.
fn option_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(alloc::vec![
            "--bits",
            "--boundary",
            "--max-segment",
            "--above-4g",
            "--force-double-buffer",
            "--trace",
            "--scatter",
            "--no-wait",
            "--",
        ])
        .prop_map(String::from),
        any::<u64>().prop_map(|value| value.to_string()),
        (0u32..70).prop_map(|value| value.to_string()),
        (0u32..64).prop_map(|shift| format!("{:#x}", 1u64 << shift)),
        text(),
    ]
}

/// A 64-bit value, often at an edge: 0, 1, near 2^64, or next to `near`.
fn edge(near: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        (0u64..3).prop_map(|below| u64::MAX - below),
        (0u64..3).prop_map(move |step| near.wrapping_add(step).wrapping_sub(1)),
        any::<u64>(),
        0u64..100_000,
    ]
}

proptest! {
    #![proptest_config(generated_input_config())]

    /// Any text: `number`, `argument`, `pattern` and `foreign_character` give
    /// what their references say, and never panic.
    #[test]
    fn text_parses_as_its_reference_says(text in text(), what in prop::sample::select(&["LBA", "--bits", ""][..])) {
        prop_assert_eq!(number(&text), reference_number(&text), "number({:?})", text);
        let words = [text.as_str()];
        match argument(&words, 0, what) {
            Ok(value) => prop_assert_eq!(Some(value), reference_number(&text)),
            Err(message) => prop_assert_eq!(message, format!("bad number '{text}' for {what}")),
        }
        prop_assert_eq!(argument(&words, 1, what), Err(format!("missing {what}")));
        let expected = if text.starts_with(|character: char| character.is_ascii_digit()) {
            reference_byte(&text).map(|byte| alloc::vec![byte])
        } else {
            Some(text.as_bytes().to_vec())
        };
        prop_assert_eq!(pattern(&text).ok(), expected, "pattern({:?})", text);
        let foreign = text.chars().find(|character| !matches!(character, ' ' | '\t' | '!'..='~'));
        prop_assert_eq!(foreign_character(&text), foreign);
    }

    /// Every 64-bit number, written as the shell's help writes numbers, reads
    /// back as itself; with a suffix, as itself times the suffix, or not at
    /// all when that passes 2^64.
    #[test]
    fn numbers_round_trip(value in edge(1 << 54), suffix in prop::sample::select(alloc::vec![("", 0), ("K", 10), ("m", 20), ("G", 30)])) {
        let (suffix, shift) = suffix;
        let scaled = value.checked_mul(1 << shift);
        prop_assert_eq!(number(&format!("{value}{suffix}")), scaled);
        prop_assert_eq!(number(&format!("{value:#x}{suffix}")), scaled);
        prop_assert_eq!(number(&format!("0X{value:X}{suffix}")), scaled);
        let byte = value as u8;
        prop_assert_eq!(pattern(&byte.to_string()), Ok(alloc::vec![byte]));
        prop_assert_eq!(pattern(&format!("{byte:#x}")), Ok(alloc::vec![byte]));
    }

    /// Any word list: `queue_options` and `dma_read_options` return, and what
    /// they accept keeps the limits their messages state.
    #[test]
    fn option_lists_are_parsed_within_their_limits(words in prop::collection::vec(option_word(), 0..8)) {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        if let Ok(options) = queue_options(&words) {
            prop_assert!(options.bits.is_none_or(|bits| (12..=64).contains(&bits)));
            prop_assert!(words.iter().all(|word| !word.starts_with("--") || ["--bits", "--above-4g", "--no-wait"].contains(word)));
        }
        if let Ok(options) = dma_read_options(&words) {
            prop_assert!(options.bits.is_none_or(|bits| (12..=64).contains(&bits)));
            prop_assert!(options.boundary.is_none_or(|boundary| boundary.is_power_of_two() && boundary >= 512));
            prop_assert!(options.max_segment.is_none_or(|size| size >= 512));
            prop_assert!(options.scatter.is_none_or(|pages| (2..=MOST_SCATTERED_PAGES).contains(&pages)));
        }
    }

    /// `sectors_on_disk` accepts exactly the ranges that end on the disk, the
    /// end counted without wrapping; every refusal names the disk.
    #[test]
    fn sectors_on_disk_accepts_exactly_the_ranges_that_fit(blocks in edge(32768), lba in edge(32768), count in edge(8), name in prop::sample::select(&["vda", "hda", "nvme0n1"][..])) {
        let fits = u128::from(lba) + u128::from(count) <= u128::from(blocks);
        match sectors_on_disk(name, lba, count, blocks) {
            Ok(()) => prop_assert!(fits, "{} + {} accepted on {} sectors", lba, count, blocks),
            Err(message) => {
                prop_assert!(!fits, "{} + {} refused on {} sectors: {}", lba, count, blocks, message);
                prop_assert!(message.contains(name), "{}", message);
            }
        }
    }

    /// `size` never panics, and the number it prints is the size in its unit,
    /// rounded down to a tenth.
    #[test]
    fn sizes_print_their_value_rounded_down(bytes in edge(1 << 20)) {
        let text = size(bytes);
        let (number, unit) = text.split_once(' ').expect("a number and a unit");
        let unit = match unit {
            "B" => 1u128,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            other => return Err(TestCaseError::fail(format!("unit {other}"))),
        };
        let (whole, tenths) = number.split_once('.').unwrap_or((number, "0"));
        let tenths = u128::from(whole.parse::<u64>().unwrap()) * 10 + tenths.parse::<u128>().unwrap();
        let bytes = u128::from(bytes);
        prop_assert!(tenths * unit <= bytes * 10 && bytes * 10 < (tenths + 1) * unit, "{} for {}", text, bytes);
    }
}
