//! IDENTIFY sector counts at and past their edges, through the fake channel:
//! a drive without LBA48 (word 83 bit 10 clear) is sized by words 60-61 only,
//! never more than 2^28 - 1 sectors (ATA8-ACS: 0FFFFFFFh at most); one with
//! LBA48 by words 100-103, never 2^48 or more; none by zero sectors.

use super::*;

use crate::ata::identify::identify_words as words;

/// What the channel makes of a drive answering IDENTIFY with `answer`.
fn identified(answer: [u16; 256]) -> Result<(Addressing, u64), IoFailure> {
    let setup = setup(Some(drive(Addressing::Lba48)), None);
    *setup.fake.identify_words.lock() = Some(answer);
    let identity = setup.channel.identify(0).expect("a drive answered")?;
    Ok((identity.addressing, identity.sectors))
}

fn refused(cause: AtaCause) -> Result<(Addressing, u64), IoFailure> {
    Err(IoFailure::new(IoReturn::IoError, Cause::Ata(cause)))
}

#[test]
fn an_lba28_drive_is_never_taken_for_more_than_words_60_61_may_say() {
    // Words 60-61 all ones, and words 100-103 (which an LBA28 drive's count
    // is not read from) saying more still.
    let too_large = |sectors| AtaCause::SectorCountTooLarge { word: 60, sectors, max: 0x0fff_ffff };
    assert_eq!(identified(words(Addressing::Lba28, u32::MAX, 1 << 40)), refused(too_large(u64::from(u32::MAX))));
    assert_eq!(identified(words(Addressing::Lba28, 1 << 28, 0)), refused(too_large(1 << 28)));
    assert_eq!(identified(words(Addressing::Lba28, 0x0fff_ffff, 1 << 40)), Ok((Addressing::Lba28, 0x0fff_ffff)));
    assert_eq!(identified(words(Addressing::Lba28, 1, 0)), Ok((Addressing::Lba28, 1)));
    assert_eq!(identified(words(Addressing::Lba28, 0, 1 << 20)), refused(AtaCause::NoSectors { word: 60 }));
}

#[test]
fn an_lba48_drive_is_sized_by_words_100_103_below_2_pow_48() {
    let max = (1 << 48) - 1;
    assert_eq!(identified(words(Addressing::Lba48, 0x0fff_ffff, max)), Ok((Addressing::Lba48, max)));
    assert_eq!(
        identified(words(Addressing::Lba48, 0x0fff_ffff, 1 << 48)),
        refused(AtaCause::SectorCountTooLarge { word: 100, sectors: 1 << 48, max })
    );
    assert_eq!(
        identified(words(Addressing::Lba48, 0x0fff_ffff, u64::MAX)),
        refused(AtaCause::SectorCountTooLarge { word: 100, sectors: u64::MAX, max })
    );
    // Words 60-61 are not read for an LBA48 drive: its count is 100-103's.
    assert_eq!(identified(words(Addressing::Lba48, 0, 5000)), Ok((Addressing::Lba48, 5000)));
    assert_eq!(identified(words(Addressing::Lba48, 0x0fff_ffff, 0)), refused(AtaCause::NoSectors { word: 100 }));
}

/// Words with a good sector count (LBA48, 5000 sectors) and `edit` applied.
fn edited(edit: impl FnOnce(&mut [u16; 256])) -> [u16; 256] {
    let mut answer = words(Addressing::Lba48, 0x0fff_ffff, 5000);
    edit(&mut answer);
    answer
}

/// Word 255 for `answer`: signature A5h and the checksum that makes its bytes sum to 0.
fn with_checksum(mut answer: [u16; 256]) -> [u16; 256] {
    answer[255] = 0xa5;
    let sum = answer.iter().flat_map(|word| word.to_le_bytes()).fold(0u8, |sum, byte| sum.wrapping_add(byte));
    answer[255] |= u16::from(sum.wrapping_neg()) << 8;
    answer
}

#[test]
fn a_logical_sector_other_than_256_words_is_refused() {
    // Word 106: valid (bits 15:14 = 01), bit 12 (logical sector longer than
    // 256 words); words 117-118 the size in words.
    let sized = |size: u32| {
        edited(|answer| {
            answer[106] = 0x4000 | 1 << 12;
            answer[117] = size as u16;
            answer[118] = (size >> 16) as u16;
        })
    };
    for size in [0, 1, 257, 512, u32::MAX] {
        assert_eq!(identified(sized(size)), refused(AtaCause::LogicalSectorSize { words: size }), "{size} words");
    }
    assert_eq!(identified(sized(256)), Ok((Addressing::Lba48, 5000)));
    // Word 106 not valid (bits 15:14 not 01): its bit 12 means nothing.
    let invalid = edited(|answer| {
        answer[106] = 0xffff;
        answer[117] = 3;
    });
    assert_eq!(identified(invalid), Ok((Addressing::Lba48, 5000)));
}

#[test]
fn an_identify_checksum_that_does_not_sum_to_zero_is_refused() {
    let good = with_checksum(edited(|_| {}));
    assert_eq!(identified(good), Ok((Addressing::Lba48, 5000)));
    let mut damaged = good;
    damaged[10] ^= 0x0100;
    assert_eq!(identified(damaged), refused(AtaCause::IdentifyChecksum { word: damaged[255] }));
    // Without the A5h signature word 255 is not a checksum.
    assert_eq!(identified(edited(|answer| answer[255] = 0x1234)), Ok((Addressing::Lba48, 5000)));
}
