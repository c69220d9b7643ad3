//! Where the core DMA path lets something outside it change one transfer: the
//! shell's teaching experiments ([`super::experiment`]).
//!
//! The core asks these questions at fixed places, and nothing else: "adjust
//! these rules?" (once per prepare, before planning), "skip this step?" (the
//! fill of bounce memory, the copy out of it) and, in an IOMMU domain, "unmap
//! this new mapping at once?" and "unmap without invalidating?". Drivers, which cannot see [`HOOKS`], ask a
//! fourth through [`skip_check`]: "skip this check of my own?" (NVMe's PRP
//! rules, before it programs a transfer). Each place first looks at [`HOOKS`]:
//! with no hooks installed (the normal case) that one load is all, and every
//! answer is no. The core types hold no experiment state: the hooks keep
//! theirs, per [`Site`].

use spin::Once;

use super::address::{DmaAddr, Segment};
use super::specification::Rules;

/// A step of a transfer a hook may skip (or, for the last two, a rule it may
/// switch off), once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Skip {
    /// The copy out of bounce memory at `complete` (an `In` transfer): the
    /// device's bytes stay in the bounce buffer and the CPU's buffer keeps what
    /// it held before.
    CopyBack = 1,
    /// The fill of bounce memory from the buffer, before the device reads it
    /// (an `Out` transfer): the device reads whatever the bounce frames held.
    Fill = 2,
    /// The split of segments at the device's `boundary` (PIIX IDE: 64 KiB):
    /// one segment may cross it.
    Boundary = 3,
    /// The bounce for memory beyond the device's address limit: the device is
    /// given the real address, and its address register keeps only the bits it
    /// has, as real hardware would (the record is cut to the device's width).
    Reach = 4,
    /// The start alignment of every segment but the first
    /// (`alignment_internal_segments`; NVMe: a page) and the virtual boundary:
    /// a piece of the buffer that starts or ends elsewhere is given to the
    /// device in place, not bounced.
    InternalAlignment = 5,
}

/// A check a driver makes of a transfer's segments before it programs its
/// device, which a hook may switch off for one transfer ([`skip_check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverCheck {
    /// NVMe: only the first PRP entry may start inside a page, every one but
    /// the last ends on one (`NvmeCause::PrpRuleBroken` when not).
    PrpRules,
}

/// Whether the device's records carry the segments' addresses whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addresses {
    /// As planned (always, but in one experiment).
    Whole,
    /// Cut to the device's address bits: a hook switched off the bounce for
    /// reach ([`Skip::Reach`]) and the device got addresses it cannot hold.
    CutToDeviceWidth,
    /// The first segment points at this address, which nothing lent the
    /// device: a device going where no driver sent it (`experiment
    /// dma-steal`, a malicious device played by an honest one).
    Elsewhere(DmaAddr),
}

impl Addresses {
    /// Makes `segments` say what the device's records really carry, so that
    /// `segments()`, typed entries and `write_segments()` agree: for a device
    /// of `address_bits` bits.
    pub(crate) fn apply(self, segments: &mut [Segment], address_bits: u8) {
        match self {
            Addresses::Whole => {}
            Addresses::CutToDeviceWidth => {
                // What a device register of `address_bits` bits keeps.
                let bits = u32::from(address_bits).min(63);
                for segment in segments {
                    segment.address = DmaAddr::new(segment.address.as_u64() & ((1u64 << bits) - 1));
                }
            }
            Addresses::Elsewhere(address) => {
                if let Some(first) = segments.first_mut() {
                    first.address = address;
                }
            }
        }
    }
}

/// Whether the device's address limit makes a prepare bounce memory beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The device has a limit and sees physical addresses: memory beyond the
    /// limit is bounced.
    Limited,
    /// No limit, or an IOMMU gives the device IOVAs below it: nothing is
    /// bounced for reach.
    Unlimited,
}

/// Who asks: a platform (by its accounting, which the platforms a command may
/// see share) or an IOMMU domain. It names the asker by address, which holds
/// for as long as the asker lives: platforms and domains live for the kernel's
/// life (a test's are leaked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site(usize);

impl Site {
    /// The site `value` is.
    pub fn of<T: ?Sized>(value: &T) -> Site {
        Site(value as *const T as *const () as usize)
    }
}

/// The questions the core path asks. Each answer is for one transfer.
pub trait DmaHooks: Sync {
    /// "Adjust these rules?": the rules one prepare of command `command` on
    /// `site` plans with. `reach` says whether its address limit bounces
    /// memory. Returns how the device's records must carry the addresses.
    fn adjust_rules(&self, site: Site, command: u64, rules: &mut Rules, reach: Reach) -> Addresses;

    /// "Skip this step?": whether command `command`, on `site`, skips `step`
    /// of the transfer it is at ([`Skip::Fill`] or [`Skip::CopyBack`]).
    fn skip(&self, site: Site, command: u64, step: Skip) -> bool;

    /// "Unmap at once?": whether the IOMMU domain `site` unmaps the pages it
    /// just mapped before handing out their IOVAs (the device meets a hole).
    fn unmap_at_once(&self, site: Site) -> bool;

    /// "Unmap without invalidating?": whether the IOMMU domain `site` clears
    /// the leaves of the range it unmaps now and gives its IOVAs back without
    /// making the unit forget them (the unit may still translate them).
    fn skip_invalidation(&self, site: Site) -> bool;

    /// "Skip this check?": whether the driver at `site` (its hardware queue,
    /// [`crate::block::BlockDevice::hooks_site`]) skips `check` for the
    /// transfer it is about to program.
    fn skip_check(&self, site: Site, check: DriverCheck) -> bool;
}

/// The installed hooks, if any. The core path reads it where it may ask a
/// question, and only with hooks installed works out who asks ([`Site::of`]).
pub(crate) static HOOKS: Once<&'static dyn DmaHooks> = Once::new();

/// What a driver asks before `check`: whether the installed hooks switch it
/// off for the transfer the driver at `site` programs now. `false` with no
/// hooks installed (one load).
pub fn skip_check(site: Site, check: DriverCheck) -> bool {
    HOOKS.get().is_some_and(|hooks| hooks.skip_check(site, check))
}

/// Installs `hooks` for the kernel's life. Only one set can be installed: the
/// first call wins, and `false` says other hooks were there already.
pub fn install(hooks: &'static dyn DmaHooks) -> bool {
    let installed = HOOKS.call_once(|| hooks);
    core::ptr::addr_eq(*installed as *const dyn DmaHooks, hooks as *const dyn DmaHooks)
}
