//! IOVA space: which I/O virtual page numbers of one IOMMU domain are in use.
//!
//! First fit over a sorted free list, with neighbours merged on free: a domain
//! has a few transfers in flight, so the list stays short. Page 0 is never handed
//! out, so a device that uses a null address faults instead of reaching memory.

use alloc::collections::BTreeMap;

/// The free page ranges of one domain's IOVA space.
#[derive(Debug)]
pub struct IovaSpace {
    /// First page -> pages, for each free range; ranges never touch.
    free: BTreeMap<u64, u64>,
}

impl IovaSpace {
    /// A space of pages `[1, end_page)` (page 0 stays unused).
    pub fn new(end_page: u64) -> IovaSpace {
        let mut free = BTreeMap::new();
        if end_page > 1 {
            free.insert(1, end_page - 1);
        }
        IovaSpace { free }
    }

    /// `count` consecutive pages that all lie below page `limit`, lowest first;
    /// `None` if no free range that low is long enough.
    pub fn allocate(&mut self, count: u64, limit: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        let (&start, &length) = self
            .free
            .iter()
            .find(|&(&start, &length)| length >= count && start.checked_add(count).is_some_and(|end| end <= limit))?;
        self.free.remove(&start);
        if length > count {
            self.free.insert(start + count, length - count);
        }
        Some(start)
    }

    /// Takes exactly pages `[start, start + count)` if all are free.
    pub fn allocate_at(&mut self, start: u64, count: u64) -> bool {
        let Some(end) = start.checked_add(count).filter(|_| count > 0) else {
            return false;
        };
        let Some((&first, &length)) = self.free.range(..=start).next_back() else {
            return false;
        };
        if first + length < end {
            return false;
        }
        self.free.remove(&first);
        if start > first {
            self.free.insert(first, start - first);
        }
        if first + length > end {
            self.free.insert(end, first + length - end);
        }
        true
    }

    /// Gives back `count` pages from `start`, merging with free neighbours.
    /// Pages that are free already are a bug in the caller: `false`, nothing changed.
    pub fn free(&mut self, start: u64, count: u64) -> bool {
        let end = start + count;
        let before = self.free.range(..=start).next_back().map(|(&s, &l)| (s, l));
        let after = self.free.range(start..).next().map(|(&s, &l)| (s, l));
        if before.is_some_and(|(s, l)| s + l > start) || after.is_some_and(|(s, _)| s < end) {
            return false;
        }
        let (mut first, mut length) = (start, count);
        if let Some((s, l)) = before.filter(|&(s, l)| s + l == start) {
            self.free.remove(&s);
            first = s;
            length += l;
        }
        if let Some((s, l)) = after.filter(|&(s, _)| s == end) {
            self.free.remove(&s);
            length += l;
        }
        self.free.insert(first, length);
        true
    }

    /// Free pages in all.
    pub fn free_pages(&self) -> u64 {
        self.free.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_below_the_limit_and_merging_on_free() {
        let mut space = IovaSpace::new(100);
        assert_eq!(space.free_pages(), 99);
        let a = space.allocate(10, 100).unwrap();
        let b = space.allocate(10, 100).unwrap();
        assert_eq!((a, b), (1, 11));
        assert_eq!(space.allocate(90, 100), None, "only 79 pages are left");
        assert_eq!(space.allocate(5, 20), None, "nothing that low is free");
        assert!(space.free(a, 10));
        assert!(!space.free(a, 10), "a double free is refused");
        assert!(space.free(b, 10));
        assert_eq!(space.free_pages(), 99);
        assert_eq!(space.allocate(99, 100), Some(1), "the ranges merged back into one");
    }

    #[test]
    fn a_range_can_be_taken_at_a_given_place() {
        let mut space = IovaSpace::new(100);
        assert!(space.allocate_at(40, 10));
        assert!(!space.allocate_at(45, 10), "overlaps the taken range");
        assert!(!space.allocate_at(0, 1), "page 0 is never handed out");
        assert_eq!(space.free_pages(), 89);
        assert!(space.free(40, 10));
        assert_eq!(space.allocate(99, 100), Some(1));
    }

    #[test]
    fn page_zero_is_never_handed_out() {
        let mut space = IovaSpace::new(4);
        assert_eq!(space.allocate(1, 4), Some(1));
        assert_eq!(space.allocate(2, 4), Some(2));
        assert_eq!(space.allocate(1, 4), None);
    }
}
