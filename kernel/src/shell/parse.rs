//! Parsing shell input: numbers (decimal, `0x` hex, `K`/`M`/`G` suffixes) and the
//! options of `dma read`. Pure, so it is tested on the host.

use alloc::format;
use alloc::string::String;

/// A number as the shell accepts it: `4096`, `0x1000`, `64K`, `1M`, `4G`.
pub fn number(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&text[..text.len() - 1], 1 << 20),
        b'G' | b'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    value.checked_mul(multiplier)
}

/// A number for the argument called `what`, or a message saying what is wrong.
pub fn argument(words: &[&str], index: usize, what: &str) -> Result<u64, String> {
    let word = words.get(index).ok_or_else(|| format!("missing {what}"))?;
    number(word).ok_or_else(|| format!("bad number '{word}' for {what}"))
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
}

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
            "--bits" => {
                let bits = value("--bits")?;
                if !(12..=64).contains(&bits) {
                    return Err(format!("--bits must be 12..=64, not {bits}"));
                }
                options.bits = Some(bits as u8);
            }
            "--boundary" => {
                let boundary = value("--boundary")?;
                if !boundary.is_power_of_two() {
                    return Err(format!("--boundary must be a power of two, not {boundary}"));
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
            other => return Err(format!("unknown option '{other}' (see help)")),
        }
        index += 1;
    }
    Ok(options)
}

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
        assert_eq!(dma_read_options(&["--fast"]), Err(String::from("unknown option '--fast' (see help)")));
    }
}
