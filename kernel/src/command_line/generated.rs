//! The command-line option reader fed generated command lines: any text, and
//! lines made of `key=value` words with near-miss keys, empty values and
//! non-ASCII. It must never panic and must give the value of the first word
//! that is exactly `key=` followed by the value.

use alloc::string::String;

use proptest::prelude::*;

use super::option;
use crate::test_support::generated_input_config;

/// Characters of keys and values, and whitespace and non-ASCII around them.
const CHARACTERS: &[char] = &['l', 'o', 'g', '.', '=', 'd', '1', ' ', '\u{e9}', '\u{3000}', '\n'];

/// A short run of characters, mostly from [`CHARACTERS`], sometimes any.
fn characters() -> impl Strategy<Value = String> {
    let character = prop_oneof![4 => prop::sample::select(CHARACTERS), 1 => any::<char>()];
    prop::collection::vec(character, 0..6).prop_map(String::from_iter)
}

/// A word of a command line: a known key or a near miss, maybe `=`, a value.
fn word() -> impl Strategy<Value = String> {
    let key = prop::sample::select(&["log", "dma.debug", "dma.bounce_pages", "test.filter", "lo", "logx", ""][..]);
    (key, prop::sample::select(&["=", "", "=="][..]), characters()).prop_map(|(key, equals, value)| {
        let mut word = String::from(key);
        word.push_str(equals);
        word.push_str(&value);
        word
    })
}

proptest! {
    #![proptest_config(generated_input_config())]

    /// `option` gives the value after `key=` in the first whitespace-separated
    /// word that starts with `key=`, and nothing when no word does.
    #[test]
    fn the_first_key_word_gives_the_value(
        words in prop::collection::vec(word(), 0..6),
        separators in prop::collection::vec(prop::sample::select(alloc::vec![" ", "\t", "  ", "\u{3000}", "\n"]), 6),
        key in prop_oneof![prop::sample::select(&["log", "dma.debug", "lo", ""][..]).prop_map(String::from), characters()],
    ) {
        let line: String = words.iter().zip(&separators).flat_map(|(word, separator)| [word.as_str(), separator]).collect();
        let expected = line.split_whitespace().find_map(|word| {
            let value = word.get(key.len()..)?.strip_prefix('=')?;
            (word.as_bytes()[..key.len()] == *key.as_bytes()).then_some(value)
        });
        let found = option(&line, &key);
        prop_assert_eq!(found, expected, "option({:?}, {:?})", line, key);
    }
}
