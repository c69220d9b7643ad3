//! A line editor for the serial console: echo, backspace, Enter. Pure, so it is
//! tested on the host.

use alloc::string::String;

/// What one input byte did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing to show (an ignored byte).
    Nothing,
    /// Show these bytes (the echo of a character, or of an erase).
    Echo(&'static str),
    /// Echo this character.
    Char(char),
    /// The line is complete.
    Line(String),
}

/// The line being typed.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    last_was_return: bool,
}

/// The longest line kept; longer input is ignored until Enter.
const MAX_LINE: usize = 256;

impl LineEditor {
    /// Feeds one byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        let after_return = core::mem::replace(&mut self.last_was_return, byte == b'\r');
        match byte {
            // A terminal sends CR, a pipe LF, Windows CR LF: one line each time.
            b'\n' if after_return => Edit::Nothing,
            b'\r' | b'\n' => Edit::Line(core::mem::take(&mut self.line)),
            0x08 | 0x7f => match self.line.pop() {
                Some(_) => Edit::Echo("\x08 \x08"),
                None => Edit::Nothing,
            },
            0x20..0x7f if self.line.len() < MAX_LINE => {
                self.line.push(char::from(byte));
                Edit::Char(char::from(byte))
            }
            _ => Edit::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_all(editor: &mut LineEditor, input: &[u8]) -> alloc::vec::Vec<Edit> {
        input.iter().map(|&byte| editor.feed(byte)).collect()
    }

    #[test]
    fn backspace_erases_and_enter_ends_the_line() {
        let mut editor = LineEditor::default();
        let edits = type_all(&mut editor, b"lsbk\x7fk\r\n");
        assert_eq!(edits[4], Edit::Echo("\x08 \x08"));
        assert_eq!(edits[6], Edit::Line(String::from("lsbk")));
        assert_eq!(edits[7], Edit::Nothing, "LF after CR is not a second line");
        let edits = type_all(&mut editor, b"\x08help\n\n");
        assert_eq!(edits[0], Edit::Nothing, "backspace on an empty line");
        assert_eq!(edits[5], Edit::Line(String::from("help")));
        assert_eq!(edits[6], Edit::Line(String::new()), "an empty line");
        assert_eq!(editor.feed(0x1b), Edit::Nothing, "escape is ignored");
    }
}
