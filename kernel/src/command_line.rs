//! The kernel command line's `key=value` options, read one way by every part
//! of the kernel that takes one.

/// The value of the first `key=` word of `command_line` (`key` without the
/// `=`), or `None` when no word starts with it.
pub fn option<'a>(command_line: &'a str, key: &str) -> Option<&'a str> {
    command_line.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod generated;

#[cfg(test)]
mod tests {
    use super::option;

    #[test]
    fn the_first_word_with_the_key_gives_the_value() {
        assert_eq!(option("quiet log=debug log=info", "log"), Some("debug"));
        assert_eq!(option("log=", "log"), Some(""));
        assert_eq!(option("dma.debug=off", "log"), None);
        assert_eq!(option("logx=1 log", "log"), None, "only `key=` counts, not a longer key or the bare word");
        assert_eq!(option("", "log"), None);
    }
}
