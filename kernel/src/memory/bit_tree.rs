//! A hierarchical bitmap: find a set bit in O(log64 n), set and clear in O(log64 n).
//!
//! Level 0 holds one bit per item. Each higher level holds one bit per word of
//! the level below, set when that word has any bit set. Finding the first set bit
//! walks from the single top word down, one word per level: about four steps for
//! 16 million items.

/// Bits per word.
const WORD_BITS: usize = 64;
/// Enough levels for 64^6 items (far beyond any machine dmakit boots on).
const MAX_LEVELS: usize = 6;

/// The hierarchical bitmap over caller-provided storage.
#[derive(Debug)]
pub struct BitTree<'a> {
    words: &'a mut [u64],
    /// Start of each level in `words`, level 0 (the leaves) first.
    level_start: [usize; MAX_LEVELS],
    level_count: usize,
    bits: usize,
}

impl<'a> BitTree<'a> {
    /// Words of storage a tree of `bits` bits needs.
    pub const fn words_needed(bits: usize) -> usize {
        let mut words = bits.div_ceil(WORD_BITS);
        let mut total = words;
        while words > 1 {
            words = words.div_ceil(WORD_BITS);
            total += words;
        }
        if total == 0 { 1 } else { total }
    }

    /// A tree of `bits` bits, all clear. `storage` must hold [`Self::words_needed`] words.
    pub fn new(bits: usize, storage: &'a mut [u64]) -> Self {
        assert!(storage.len() >= Self::words_needed(bits), "bit tree storage too small");
        let mut level_start = [0; MAX_LEVELS];
        let mut level_count = 0;
        let mut start = 0;
        let mut words = bits.div_ceil(WORD_BITS).max(1);
        loop {
            level_start[level_count] = start;
            level_count += 1;
            start += words;
            if words == 1 {
                break;
            }
            words = words.div_ceil(WORD_BITS);
        }
        let words = &mut storage[..start];
        words.fill(0);
        Self { words, level_start, level_count, bits }
    }

    /// How many bits the tree has.
    pub fn len(&self) -> usize {
        self.bits
    }

    /// Whether the tree has no bits at all.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }

    /// Whether bit `index` is set.
    pub fn get(&self, index: usize) -> bool {
        self.leaf(index / WORD_BITS) & (1 << (index % WORD_BITS)) != 0
    }

    /// The leaf word holding bits `64 * word .. 64 * word + 64`.
    pub fn leaf(&self, word: usize) -> u64 {
        self.words[word]
    }

    /// Sets bit `index`.
    pub fn set(&mut self, index: usize) {
        assert!(index < self.bits, "bit {index} out of range");
        self.set_from_level(0, index);
    }

    /// Sets bit `position` of `level`, and the bits above it that were empty.
    fn set_from_level(&mut self, first_level: usize, index: usize) {
        let mut position = index;
        for level in first_level..self.level_count {
            let word = &mut self.words[self.level_start[level] + position / WORD_BITS];
            let was_empty = *word == 0;
            *word |= 1 << (position % WORD_BITS);
            if !was_empty {
                break;
            }
            position /= WORD_BITS;
        }
    }

    /// Clears bit `index`.
    pub fn clear(&mut self, index: usize) {
        assert!(index < self.bits, "bit {index} out of range");
        self.clear_from_level(0, index);
    }

    /// Clears bit `position` of `level`, and the bits above it that became empty.
    fn clear_from_level(&mut self, first_level: usize, index: usize) {
        let mut position = index;
        for level in first_level..self.level_count {
            let word = &mut self.words[self.level_start[level] + position / WORD_BITS];
            *word &= !(1 << (position % WORD_BITS));
            if *word != 0 {
                break;
            }
            position /= WORD_BITS;
        }
    }

    /// Sets bits `[from, to)`: a word at a time, so a run of frames costs a few
    /// word writes, not one tree walk per frame.
    pub fn set_range(&mut self, from: usize, to: usize) {
        self.update_range(from, to, true);
    }

    /// Clears bits `[from, to)`, a word at a time.
    pub fn clear_range(&mut self, from: usize, to: usize) {
        self.update_range(from, to, false);
    }

    fn update_range(&mut self, from: usize, to: usize, set: bool) {
        assert!(from <= to && to <= self.bits, "bits {from}..{to} out of range");
        let mut index = from;
        while index < to {
            let word_index = index / WORD_BITS;
            let end = ((word_index + 1) * WORD_BITS).min(to);
            let width = end - index;
            let mask = if width == WORD_BITS { u64::MAX } else { ((1u64 << width) - 1) << (index % WORD_BITS) };
            let word = &mut self.words[word_index];
            let was_empty = *word == 0;
            if set {
                *word |= mask;
            } else {
                *word &= !mask;
            }
            let is_empty = *word == 0;
            // Only a leaf word that became empty or stopped being empty changes
            // the levels above.
            if self.level_count > 1 && was_empty != is_empty {
                if set {
                    self.set_from_level(1, word_index);
                } else {
                    self.clear_from_level(1, word_index);
                }
            }
            index = end;
        }
    }

    /// The lowest set bit, walking down from the top level.
    pub fn first_set(&self) -> Option<usize> {
        let mut position = 0;
        for level in (0..self.level_count).rev() {
            let word = self.words[self.level_start[level] + position];
            if word == 0 {
                return None;
            }
            position = position * WORD_BITS + word.trailing_zeros() as usize;
        }
        Some(position)
    }

    /// The lowest set bit at or after `from`, scanning leaf words (skipping empty
    /// words 64 bits at a time).
    pub fn next_set(&self, from: usize) -> Option<usize> {
        if from >= self.bits {
            return None;
        }
        let mut word_index = from / WORD_BITS;
        let mut word = self.leaf(word_index) & (u64::MAX << (from % WORD_BITS));
        loop {
            if word != 0 {
                let index = word_index * WORD_BITS + word.trailing_zeros() as usize;
                return (index < self.bits).then_some(index);
            }
            word_index += 1;
            if word_index * WORD_BITS >= self.bits {
                return None;
            }
            word = self.leaf(word_index);
        }
    }

    /// The lowest clear bit in `[from, to)`, or `None` when all of them are set.
    pub fn first_clear_in(&self, from: usize, to: usize) -> Option<usize> {
        let mut index = from;
        while index < to {
            let word = !self.leaf(index / WORD_BITS) >> (index % WORD_BITS);
            if word != 0 {
                let found = index + word.trailing_zeros() as usize;
                return (found < to).then_some(found);
            }
            index = (index / WORD_BITS + 1) * WORD_BITS;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn matches_a_set(bits in 1usize..20_000, operations in prop::collection::vec((any::<bool>(), any::<usize>()), 0..400)) {
            let mut storage = vec![0; BitTree::words_needed(bits)];
            let mut tree = BitTree::new(bits, &mut storage);
            let mut model = BTreeSet::new();
            for (set, raw) in operations {
                let index = raw % bits;
                if set { tree.set(index); model.insert(index); } else { tree.clear(index); model.remove(&index); }
                prop_assert_eq!(tree.first_set(), model.iter().next().copied());
                let from = raw.rotate_left(7) % bits;
                prop_assert_eq!(tree.next_set(from), model.range(from..).next().copied());
                let to = (from + raw % 300).min(bits);
                let expected = (from..to).find(|i| !model.contains(i));
                prop_assert_eq!(tree.first_clear_in(from, to), expected);
            }
        }

        #[test]
        fn ranges_match_a_set(bits in 1usize..5_000, operations in prop::collection::vec((any::<bool>(), any::<usize>(), 0usize..300), 0..100)) {
            let mut storage = vec![0; BitTree::words_needed(bits)];
            let mut tree = BitTree::new(bits, &mut storage);
            let mut model = BTreeSet::new();
            for (set, raw, length) in operations {
                let from = raw % bits;
                let to = (from + length).min(bits);
                if set { tree.set_range(from, to); model.extend(from..to); } else {
                    tree.clear_range(from, to);
                    for index in from..to { model.remove(&index); }
                }
                prop_assert_eq!(tree.first_set(), model.iter().next().copied());
                let probe = raw.rotate_left(11) % bits;
                prop_assert_eq!(tree.next_set(probe), model.range(probe..).next().copied());
                prop_assert_eq!(tree.get(probe), model.contains(&probe));
            }
        }
    }
}
