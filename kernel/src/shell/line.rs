//! A line editor for the serial console: echo, backspace, Ctrl-U, Ctrl-C, Enter,
//! and a history on the arrow keys; a line with a byte it does not take is
//! refused whole. Pure, so it is tested on the host.

use alloc::collections::VecDeque;
use alloc::string::String;

/// What one input byte did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Nothing to show (an ignored byte, or part of an escape sequence).
    Nothing,
    /// Show these bytes: the echo of a character, an erase, or a redrawn line.
    Echo(String),
    /// The line is complete: run it.
    Line(String),
    /// Ctrl-C: the line was abandoned; show `^C` and a fresh prompt.
    Abandoned,
    /// Enter after more than [`MAX_LINE`] characters: the line is refused, not
    /// cut short (a cut command could run with the wrong arguments).
    TooLong,
    /// Enter on a line that had a byte the shell does not take (this one, the
    /// first): the line is refused whole. Run without the byte it could name
    /// another disk or write other data (`read v\u{e9}da` would read `vda`).
    ForeignByte(u8),
    /// Enter on a line some of whose bytes were dropped before the shell got
    /// them (its input buffer was full): the line is refused whole, as it
    /// could run with the wrong arguments.
    InputLost,
}

/// Where the editor is inside an escape sequence (`ESC [ A` is the up arrow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Escape {
    /// Not in one.
    #[default]
    None,
    /// After `ESC`.
    Started,
    /// After `ESC [`: a control sequence (CSI), whose parameter bytes
    /// (0x30..=0x3f, `3` or `1;5`) and intermediate bytes (0x20..=0x2f) run up
    /// to one final byte (0x40..=0x7e): `ESC [ 3 ~` is Delete, `ESC [ 1 ; 5 C`
    /// Ctrl-Right.
    ControlSequence,
    /// After `ESC O`, which terminals send in application mode: exactly one
    /// byte follows (`ESC O A` is the up arrow).
    SingleShift,
}

/// The line being typed, and the lines typed before.
#[derive(Debug, Default)]
pub struct LineEditor {
    line: String,
    last_was_return: bool,
    /// Characters were dropped because the line was full: Enter refuses it.
    overflowed: bool,
    /// The first byte typed that the shell does not take (not printable ASCII,
    /// tab or an editing key): it is not shown or kept, and Enter refuses the
    /// line. Only Ctrl-U, Ctrl-C or a recalled line forget it.
    foreign: Option<u8>,
    escape: Escape,
    /// The last [`HISTORY`] lines, oldest first.
    history: VecDeque<String>,
    /// Which history entry is shown (0 = the newest), while browsing.
    browsing: Option<usize>,
    /// Bytes were dropped somewhere in this line: Enter refuses it. Forgotten
    /// like [`LineEditor::foreign`].
    lost: Lost,
    /// The line being typed before browsing started, given back by Down.
    draft: String,
    /// The draft's [`LineEditor::foreign`], given back with it.
    draft_foreign: Option<u8>,
    /// The draft's [`LineEditor::lost`], given back with it.
    draft_lost: Lost,
}

/// Whether the line being typed lost bytes on the way in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Lost {
    /// Every byte typed reached the editor.
    #[default]
    Nothing,
    /// Bytes were dropped between two the editor got.
    Bytes,
}

/// The longest line kept; Enter after a longer one refuses it.
pub const MAX_LINE: usize = 256;
/// Lines the history keeps.
pub const HISTORY: usize = 16;

/// Backspace, space, backspace: erases one character on a terminal.
const ERASE: &str = "\x08 \x08";

impl LineEditor {
    /// Feeds one byte.
    pub fn feed(&mut self, byte: u8) -> Edit {
        let after_return = core::mem::replace(&mut self.last_was_return, byte == b'\r');
        match core::mem::take(&mut self.escape) {
            Escape::Started if byte == b'[' => {
                self.escape = Escape::ControlSequence;
                return Edit::Nothing;
            }
            Escape::Started if byte == b'O' => {
                self.escape = Escape::SingleShift;
                return Edit::Nothing;
            }
            // Parameters and intermediates (`1;5` of Ctrl-Right): the key is
            // told by the final byte, so they are only skipped.
            Escape::ControlSequence if (0x20..=0x3f).contains(&byte) => {
                self.escape = Escape::ControlSequence;
                return Edit::Nothing;
            }
            Escape::ControlSequence | Escape::SingleShift if (0x40..=0x7e).contains(&byte) => {
                return match byte {
                    b'A' => self.recall_older(),
                    b'B' => self.recall_newer(),
                    // Other keys (left, right, Delete, function keys) are not
                    // supported: the whole sequence is swallowed, so none of it
                    // is typed as text.
                    _ => Edit::Nothing,
                };
            }
            // A lone ESC followed by anything else, or a byte no sequence can
            // hold (Enter, another ESC, a non-ASCII byte): the sequence is
            // dropped and the byte is taken as typed, so Enter is never lost.
            Escape::Started | Escape::ControlSequence | Escape::SingleShift | Escape::None => {}
        }
        match byte {
            // A terminal sends CR, a pipe LF, Windows CR LF: one line each time.
            b'\n' if after_return => Edit::Nothing,
            b'\r' | b'\n' => self.enter(),
            0x08 | 0x7f => match self.line.pop() {
                Some(_) => Edit::Echo(String::from(ERASE)),
                None => Edit::Nothing,
            },
            // Ctrl-U: erase the whole line.
            0x15 => {
                self.overflowed = false;
                self.foreign = None;
                self.lost = Lost::Nothing;
                self.browsing = None;
                self.replace_line(String::new())
            }
            // Ctrl-C: abandon the line.
            0x03 => {
                self.line.clear();
                self.overflowed = false;
                self.foreign = None;
                self.lost = Lost::Nothing;
                self.browsing = None;
                Edit::Abandoned
            }
            0x1b => {
                self.escape = Escape::Started;
                Edit::Nothing
            }
            // Tab separates words like a space does; stored as a space so that
            // one backspace erases the one column it took.
            b'\t' => self.push(' '),
            0x20..0x7f => self.push(char::from(byte)),
            // Anything else (a UTF-8 byte, another control byte) is not typed,
            // and the line is refused at Enter rather than run without it.
            foreign => {
                self.foreign.get_or_insert(foreign);
                Edit::Nothing
            }
        }
    }

    /// Bytes were dropped just before the next one fed (the input buffer was
    /// full): the line being typed is refused at Enter. The next byte belongs
    /// to it, whatever it is (the dropped bytes may have held this line's end).
    pub fn bytes_lost(&mut self) {
        self.lost = Lost::Bytes;
        // What came before the gap no longer touches the next byte: an escape
        // sequence cut short is dropped, and an LF is an Enter of its own, not
        // the second half of a CR LF.
        self.escape = Escape::None;
        self.last_was_return = false;
    }

    /// Types `character`, or drops it (and remembers) when the line is full.
    fn push(&mut self, character: char) -> Edit {
        if self.line.len() >= MAX_LINE {
            self.overflowed = true;
            return Edit::Nothing;
        }
        self.line.push(character);
        Edit::Echo(String::from(character))
    }

    /// Enter: the line, unless it overflowed; either way it starts afresh.
    fn enter(&mut self) -> Edit {
        let line = core::mem::take(&mut self.line);
        self.browsing = None;
        self.draft.clear();
        self.draft_foreign = None;
        self.draft_lost = Lost::Nothing;
        let foreign = self.foreign.take();
        let overflowed = core::mem::take(&mut self.overflowed);
        // Lost bytes first: the refusal most worth knowing (input was dropped,
        // and more may be missing).
        if core::mem::take(&mut self.lost) == Lost::Bytes {
            return Edit::InputLost;
        }
        if overflowed {
            return Edit::TooLong;
        }
        // Not kept in the history either: recalled, it would run without the byte.
        if let Some(byte) = foreign {
            return Edit::ForeignByte(byte);
        }
        // Blank lines and repeats of the last line would only fill the history.
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        Edit::Line(line)
    }

    /// Up: the entry before the one shown (the newest when not browsing).
    fn recall_older(&mut self) -> Edit {
        let next = self.browsing.map_or(0, |shown| shown + 1);
        if next >= self.history.len() {
            return Edit::Nothing;
        }
        if self.browsing.is_none() {
            self.draft = self.line.clone();
            self.draft_foreign = self.foreign.take();
            self.draft_lost = core::mem::take(&mut self.lost);
        }
        self.browsing = Some(next);
        let entry = self.history[self.history.len() - 1 - next].clone();
        self.replace_line(entry)
    }

    /// Down: the entry after the one shown, then the line typed before browsing.
    fn recall_newer(&mut self) -> Edit {
        match self.browsing {
            None => Edit::Nothing,
            Some(0) => {
                self.browsing = None;
                self.foreign = self.draft_foreign.take();
                self.lost = core::mem::take(&mut self.draft_lost);
                let draft = core::mem::take(&mut self.draft);
                self.replace_line(draft)
            }
            Some(shown) => {
                self.browsing = Some(shown - 1);
                let entry = self.history[self.history.len() - shown].clone();
                self.replace_line(entry)
            }
        }
    }

    /// Makes `text` the line, and says how to redraw it: erase the old one
    /// character by character (the editor does not know the prompt's width, so
    /// it cannot go back to the start of the terminal line), then type the new.
    fn replace_line(&mut self, text: String) -> Edit {
        if self.line.is_empty() && text.is_empty() {
            return Edit::Nothing;
        }
        let mut echo = ERASE.repeat(self.line.chars().count());
        echo.push_str(&text);
        self.line = text;
        Edit::Echo(echo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn type_all(editor: &mut LineEditor, input: &[u8]) -> Vec<Edit> {
        input.iter().map(|&byte| editor.feed(byte)).collect()
    }

    fn echo(text: &str) -> Edit {
        Edit::Echo(String::from(text))
    }

    /// What a terminal shows after `edits`, applying each backspace.
    fn screen(edits: &[Edit]) -> String {
        let mut shown = String::new();
        for edit in edits {
            if let Edit::Echo(text) = edit {
                for character in text.chars() {
                    match character {
                        '\x08' => {
                            shown.pop();
                        }
                        other => shown.push(other),
                    }
                }
            }
        }
        // "\x08 \x08" leaves a space typed over the erased character: trim it.
        shown.trim_end().into()
    }

    #[test]
    fn backspace_erases_and_enter_ends_the_line() {
        let mut editor = LineEditor::default();
        let edits = type_all(&mut editor, b"lsbk\x7fk\r\n");
        assert_eq!(edits[4], echo("\x08 \x08"));
        assert_eq!(edits[6], Edit::Line(String::from("lsbk")));
        assert_eq!(edits[7], Edit::Nothing, "LF after CR is not a second line");
        let edits = type_all(&mut editor, b"\x08help\n\n");
        assert_eq!(edits[0], Edit::Nothing, "backspace on an empty line");
        assert_eq!(edits[5], Edit::Line(String::from("help")));
        assert_eq!(edits[6], Edit::Line(String::new()), "an empty line");
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_refused_not_cut() {
        let mut editor = LineEditor::default();
        let long = [b'a'; MAX_LINE + 1];
        let edits = type_all(&mut editor, &long);
        assert_eq!(edits[MAX_LINE], Edit::Nothing, "the character past the end is not echoed");
        assert_eq!(editor.feed(b'\n'), Edit::TooLong);
        assert_eq!(type_all(&mut editor, b"ok\n")[2], Edit::Line(String::from("ok")), "the next line is fine");
        let full = [b'b'; MAX_LINE];
        type_all(&mut editor, &full);
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::from_utf8(full.to_vec()).unwrap()), "exactly full is kept");
    }

    #[test]
    fn tab_is_typed_as_a_space() {
        let mut editor = LineEditor::default();
        let edits = type_all(&mut editor, b"read\tvda\n");
        assert_eq!(edits[4], echo(" "));
        assert_eq!(edits[8], Edit::Line(String::from("read vda")));
    }

    #[test]
    fn ctrl_u_erases_the_line_and_ctrl_c_abandons_it() {
        let mut editor = LineEditor::default();
        let edits = type_all(&mut editor, b"abc\x15");
        assert_eq!(edits[3], echo("\x08 \x08\x08 \x08\x08 \x08"), "each character erased on screen");
        assert_eq!(screen(&edits), "");
        assert_eq!(editor.feed(0x15), Edit::Nothing, "Ctrl-U on an empty line");
        assert_eq!(type_all(&mut editor, b"ok\n")[2], Edit::Line(String::from("ok")));
        type_all(&mut editor, b"rm everything");
        assert_eq!(editor.feed(0x03), Edit::Abandoned);
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::new()), "nothing of the abandoned line is left");
        let overflow = [b'x'; MAX_LINE + 5];
        type_all(&mut editor, &overflow);
        editor.feed(0x03);
        assert_eq!(type_all(&mut editor, b"a\n")[1], Edit::Line(String::from("a")), "Ctrl-C forgets the overflow");
    }

    #[test]
    fn up_and_down_walk_the_history_and_redraw_the_line() {
        let mut editor = LineEditor::default();
        type_all(&mut editor, b"lsblk\nmem\nmem\n\nstats\n");
        let up = b"\x1b[A";
        let down = b"\x1b[B";
        let mut edits = type_all(&mut editor, b"dr");
        edits.extend(type_all(&mut editor, up));
        assert_eq!(edits.last(), Some(&echo("\x08 \x08\x08 \x08stats")), "the draft is erased, the newest shown");
        assert_eq!(screen(&edits), "stats");
        edits.extend(type_all(&mut editor, up));
        assert_eq!(screen(&edits), "mem", "a repeated line is kept once, an empty one not at all");
        edits.extend(type_all(&mut editor, up));
        assert_eq!(screen(&edits), "lsblk");
        assert_eq!(type_all(&mut editor, up)[2], Edit::Nothing, "no older line");
        edits.extend(type_all(&mut editor, down));
        assert_eq!(screen(&edits), "mem");
        edits.extend(type_all(&mut editor, down));
        edits.extend(type_all(&mut editor, down));
        assert_eq!(screen(&edits), "dr", "down past the newest gives back what was being typed");
        assert_eq!(type_all(&mut editor, down)[2], Edit::Nothing);
        type_all(&mut editor, up);
        assert_eq!(editor.feed(b'\r'), Edit::Line(String::from("stats")), "a recalled line runs as typed");
        let application_mode = type_all(&mut editor, b"\x1bOA");
        assert_eq!(application_mode[2], echo("stats"), "ESC O A is the up arrow too");
    }

    #[test]
    fn the_history_keeps_the_last_sixteen_lines() {
        let mut editor = LineEditor::default();
        for number in 0..20 {
            type_all(&mut editor, alloc::format!("line {number}\n").as_bytes());
        }
        let mut edits = Vec::new();
        for _ in 0..30 {
            edits.extend(type_all(&mut editor, b"\x1b[A"));
        }
        assert_eq!(screen(&edits), "line 4", "the oldest kept is the sixteenth from the end");
    }

    #[test]
    fn a_line_with_a_byte_the_shell_does_not_take_is_not_run_without_it() {
        let mut editor = LineEditor::default();
        let typed = type_all(&mut editor, "write vda 300 1 h\u{e9}llo\n".as_bytes());
        assert_ne!(typed.last(), Some(&Edit::Line(String::from("write vda 300 1 hllo"))), "the e-acute was dropped");
        assert_eq!(typed.last(), Some(&Edit::ForeignByte(0xc3)), "the first byte of the e-acute is named");
        assert_eq!(screen(&typed), "write vda 300 1 hllo", "nothing is shown for it");
        let typed = type_all(&mut editor, "read v\u{e9}da 0 1\r".as_bytes());
        assert_ne!(typed.last(), Some(&Edit::Line(String::from("read vda 0 1"))), "another disk was read");
        let typed = type_all(&mut editor, b"lsblk\x01\n");
        assert_ne!(typed.last(), Some(&Edit::Line(String::from("lsblk"))), "a control byte was dropped");
        assert_eq!(typed.last(), Some(&Edit::ForeignByte(0x01)));
        assert_eq!(type_all(&mut editor, b"mem\n")[3], Edit::Line(String::from("mem")), "the next line is fine");
        assert_eq!(type_all(&mut editor, b"\x1b[A")[2], echo("mem"), "refused lines are not in the history");
        assert_eq!(editor.feed(0x03), Edit::Abandoned);
    }

    #[test]
    fn only_erasing_the_whole_line_forgets_a_foreign_byte() {
        let mut editor = LineEditor::default();
        type_all(&mut editor, b"ab\xffc\x7f\x7f");
        assert_eq!(editor.feed(b'\n'), Edit::ForeignByte(0xff), "backspace cannot erase what was never shown");
        type_all(&mut editor, b"ab\xff\x15lsblk");
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::from("lsblk")), "Ctrl-U forgets it");
        type_all(&mut editor, b"ab\xff\x03");
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::new()), "Ctrl-C forgets it");
        // A recalled line is what was typed then; Down gives the draft back
        // with its foreign byte.
        type_all(&mut editor, b"v\xe9\x1b[A");
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::from("lsblk")), "the recalled line runs");
        type_all(&mut editor, b"v\xe9\x1b[A\x1b[B");
        assert_eq!(editor.feed(b'\n'), Edit::ForeignByte(0xe9), "the draft keeps its foreign byte");
        let long = [b'a'; MAX_LINE + 1];
        type_all(&mut editor, &long);
        editor.feed(0x80);
        assert_eq!(editor.feed(b'\n'), Edit::TooLong, "one refusal at a time, the length first");
        assert_eq!(type_all(&mut editor, b"ok\n")[2], Edit::Line(String::from("ok")), "both are forgotten");
    }

    #[test]
    fn a_control_sequence_is_swallowed_up_to_its_final_byte() {
        let mut editor = LineEditor::default();
        // Delete (ESC [ 3 ~), Ctrl-Right (ESC [ 1 ; 5 C), F5 (ESC [ 1 5 ~), Shift-Tab (ESC [ Z).
        let edits = type_all(&mut editor, b"ab\x1b[3~c\x1b[1;5Cd\x1b[15~\x1b[Ze\n");
        assert_eq!(screen(&edits), "abcde", "{edits:?}");
        assert_eq!(edits.last(), Some(&Edit::Line(String::from("abcde"))), "no parameter byte was typed");
        // Intermediate bytes (0x20..0x2f) are part of the sequence too: ESC [ 2 SP q.
        let edits = type_all(&mut editor, b"x\x1b[2 qy\n");
        assert_eq!(edits.last(), Some(&Edit::Line(String::from("xy"))), "{edits:?}");
        // Up with a modifier (ESC [ 1 ; 2 A) is still the up arrow.
        let edits = type_all(&mut editor, b"\x1b[1;2A");
        assert_eq!(edits.last(), Some(&echo("xy")), "{edits:?}");
        editor.feed(0x03);
    }

    #[test]
    fn a_byte_that_cannot_be_in_a_control_sequence_ends_it_and_counts() {
        let mut editor = LineEditor::default();
        // ESC [ 1 then Enter: the sequence is broken off and Enter is not swallowed.
        let edits = type_all(&mut editor, b"ls\x1b[1\r");
        assert_eq!(edits.last(), Some(&Edit::Line(String::from("ls"))), "{edits:?}");
        // ESC [ then ESC [ A: the second ESC starts a new sequence (the up arrow).
        let edits = type_all(&mut editor, b"\x1b[\x1b[A");
        assert_eq!(edits.last(), Some(&echo("ls")), "{edits:?}");
        editor.feed(0x03);
        // A non-ASCII byte in a sequence breaks it off and refuses the line as any would.
        type_all(&mut editor, b"mem\x1b[2\xc3");
        assert_eq!(editor.feed(b'\n'), Edit::ForeignByte(0xc3));
    }

    #[test]
    fn a_line_that_lost_bytes_is_refused_not_run_without_them() {
        let mut editor = LineEditor::default();
        type_all(&mut editor, b"write vda 300 1 ");
        editor.bytes_lost();
        let typed = type_all(&mut editor, b"abc\n");
        assert_eq!(typed.last(), Some(&Edit::InputLost), "{typed:?}");
        assert_eq!(type_all(&mut editor, b"mem\n")[3], Edit::Line(String::from("mem")), "the next line is fine");
        assert_eq!(type_all(&mut editor, b"\x1b[A")[2], echo("mem"), "a refused line is not in the history");
        editor.feed(0x03);
        // The dropped bytes may have held the line's Enter: the byte after them
        // (here Enter itself) still belongs to the refused line.
        type_all(&mut editor, b"lsblk");
        editor.bytes_lost();
        assert_eq!(editor.feed(b'\r'), Edit::InputLost);
        // CR, then bytes lost, then LF: the LF ends the line that lost them.
        type_all(&mut editor, b"mem\r");
        editor.bytes_lost();
        assert_eq!(editor.feed(b'\n'), Edit::InputLost, "not taken for the LF of a CR LF");
        // An escape sequence cut by the gap does not swallow what follows it.
        type_all(&mut editor, b"\x1b[1");
        editor.bytes_lost();
        assert_eq!(type_all(&mut editor, b"m\n"), [echo("m"), Edit::InputLost]);
        // Lost first: a line both too long and short of bytes says bytes were lost.
        type_all(&mut editor, &[b'a'; MAX_LINE + 1]);
        editor.bytes_lost();
        assert_eq!(editor.feed(b'\n'), Edit::InputLost);
    }

    #[test]
    fn erasing_the_line_forgets_lost_bytes_and_the_draft_keeps_them() {
        let mut editor = LineEditor::default();
        type_all(&mut editor, b"mem\nab");
        editor.bytes_lost();
        type_all(&mut editor, b"c\x15lsblk");
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::from("lsblk")), "Ctrl-U forgets it");
        editor.bytes_lost();
        editor.feed(0x03);
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::new()), "Ctrl-C forgets it");
        type_all(&mut editor, b"ab");
        editor.bytes_lost();
        type_all(&mut editor, b"c\x1b[A");
        assert_eq!(editor.feed(b'\n'), Edit::Line(String::from("lsblk")), "the recalled line runs");
        type_all(&mut editor, b"ab");
        editor.bytes_lost();
        type_all(&mut editor, b"c\x1b[A\x1b[B");
        assert_eq!(editor.feed(b'\n'), Edit::InputLost, "the draft keeps its loss");
    }

    #[test]
    fn a_pasted_line_of_ten_thousand_characters_is_refused_at_its_enter() {
        use crate::input_ring::{Arrival, CONSOLE_RING_BYTES, InputRing};
        let ring = InputRing::<CONSOLE_RING_BYTES>::new();
        let mut pasted = alloc::vec![b'x'; 10_000];
        pasted.extend_from_slice(b"\rmem\r");
        let mut editor = LineEditor::default();
        let mut edits = Vec::new();
        // The UART interrupts once per 14 bytes (its FIFO's trigger level); the
        // shell takes what the ring holds between interrupts.
        for burst in pasted.chunks(14) {
            for &byte in burst {
                ring.push(byte);
            }
            while let Some(received) = ring.pop() {
                if received.arrival == Arrival::AfterLostBytes {
                    editor.bytes_lost();
                }
                edits.push(editor.feed(received.byte));
            }
        }
        assert_eq!(ring.dropped(), 0);
        let echoed = edits.iter().filter(|edit| matches!(edit, Edit::Echo(_))).count();
        assert_eq!(echoed, MAX_LINE + 3, "the first {MAX_LINE} characters and mem are echoed, no more");
        let ends: Vec<&Edit> = edits.iter().filter(|edit| !matches!(edit, Edit::Echo(_) | Edit::Nothing)).collect();
        assert_eq!(ends, [&Edit::TooLong, &Edit::Line(String::from("mem"))]);
    }

    #[test]
    fn other_escape_sequences_are_swallowed() {
        let mut editor = LineEditor::default();
        let edits = type_all(&mut editor, b"a\x1b[Cb\x1bc\n");
        assert!(edits[1..4].iter().all(|edit| *edit == Edit::Nothing), "{edits:?}");
        assert_eq!(edits.last(), Some(&Edit::Line(String::from("abc"))), "a lone ESC is dropped");
    }
}
