//! A fake VT-d register block for host tests: it answers commands at once (or
//! never, to test timeouts), keeps a log of every command it saw, and holds
//! fault records a test plants.
//!
//! The VT-d specification puts no bound on how long an IOTLB invalidation or a
//! write-buffer flush takes: software waits for the completion bit and must
//! give up at some point. [`FakeUnit::stall`] makes one kind of command never
//! finish, so the code that gives up (and what it does with the memory the
//! unit may still translate to) can be tested.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use spin::Mutex;

use super::registers::*;
use super::unit::REGISTER_PAGE;
use crate::io::RegisterIo;

/// Fails the test on a register access the driver must never make: one past
/// the register page the kernel maps (on the machine, memory of something else).
fn inside_the_page(offset: u16) {
    assert!(offset <= REGISTER_PAGE - 4, "a VT-d register access at {offset:#x}, outside the mapped register page");
}

/// What the fake unit was told to do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A global command register write (the whole value).
    GlobalCommand(u32),
    /// SRTP latched this root table address.
    RootTableSet(u64),
    /// Translation was switched on.
    TranslationEnabled,
    /// Translation was switched off.
    TranslationDisabled,
    /// A write buffer flush.
    WriteBufferFlush,
    /// A context-cache invalidation: granularity (CIRG) and source id.
    ContextInvalidation {
        /// 1 global, 2 domain, 3 device.
        granularity: u64,
        /// The SID field.
        source: u16,
    },
    /// An IOTLB invalidation: granularity (IIRG), domain, and the invalidate
    /// address register (page address | address mask) for page-selective ones.
    IotlbInvalidation {
        /// 1 global, 2 domain, 3 page.
        granularity: u64,
        /// The DID field.
        domain: u16,
        /// IVA, meaningful for page-selective invalidations.
        address: u64,
    },
}

/// A kind of command the fake unit can be told never to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// IOTLB invalidations: IOTLB.IVT stays set.
    IotlbInvalidation,
    /// Write-buffer flushes (CAP.RWBF units): GSTS.WBFS stays set.
    WriteBufferFlush,
}

struct State {
    registers: BTreeMap<u16, u32>,
    events: Vec<Event>,
    /// Commands never complete: every wait must time out.
    stuck: bool,
    /// Kinds of command that never complete until [`FakeUnit::recover`].
    stalled: Vec<Stall>,
    /// Page-selective IOTLB invalidations are refused (IAIG 0), whatever the mask.
    refuses_page_selective: bool,
    /// 32-bit register reads so far (a 64-bit read is two).
    reads: usize,
}

/// A fake unit with the given capability registers.
pub struct FakeUnit {
    capability: Capability,
    extended: ExtendedCapability,
    state: Mutex<State>,
}

/// QEMU's defaults: 39-bit 3-level tables, one fault record at 0x220, IOTLB
/// registers at 0xf0, page-selective invalidation up to 2^18 pages, 16-bit
/// domain ids, pass-through and queued invalidation offered, not coherent.
pub const QEMU_CAPABILITY: u64 =
    6 | (0b00010 << 8) | (38 << 16) | (0x22 << 24) | (0b11 << 34) | (1 << 39) | (18 << 48) | (0b11 << 54);
/// QEMU's extended capabilities: IRO 0xf0, QI, PT; C clear.
pub const QEMU_EXTENDED_CAPABILITY: u64 = (0xf << 8) | (1 << 1) | (1 << 6);

impl FakeUnit {
    /// A unit reporting `capability` and `extended`.
    pub fn new(capability: u64, extended: u64) -> FakeUnit {
        let mut registers = BTreeMap::new();
        registers.insert(VERSION, 0x10);
        registers.insert(FAULT_EVENT_CONTROL, 0);
        FakeUnit {
            capability: Capability(capability),
            extended: ExtendedCapability(extended),
            state: Mutex::new(State {
                registers,
                events: Vec::new(),
                stuck: false,
                stalled: Vec::new(),
                refuses_page_selective: false,
                reads: 0,
            }),
        }
    }

    /// A unit like QEMU's.
    pub fn qemu() -> FakeUnit {
        FakeUnit::new(QEMU_CAPABILITY, QEMU_EXTENDED_CAPABILITY)
    }

    /// Makes every later command hang (its completion bit never changes).
    pub fn get_stuck(&self) {
        self.state.lock().stuck = true;
    }

    /// Makes every later command of kind `what` hang until [`FakeUnit::recover`]
    /// (it is recorded as an event, but its completion bit never changes).
    pub fn stall(&self, what: Stall) {
        self.state.lock().stalled.push(what);
    }

    /// Makes the unit refuse every later page-selective IOTLB invalidation (it
    /// finishes with actual granularity 0, as VT-d lets a unit do).
    pub fn refuse_page_selective(&self) {
        self.state.lock().refuses_page_selective = true;
    }

    /// Ends every stall: commands still pending finish now, later ones at once.
    pub fn recover(&self) {
        let mut state = self.state.lock();
        state.stalled.clear();
        *state.registers.entry(GLOBAL_STATUS).or_insert(0) &= !WRITE_BUFFER_FLUSH;
        self.iotlb_command(&mut state, Recording::Silent);
    }

    /// Everything the unit was told so far.
    pub fn events(&self) -> Vec<Event> {
        self.state.lock().events.clone()
    }

    /// Forgets the events so far.
    pub fn clear_events(&self) {
        self.state.lock().events.clear();
    }

    /// How many 32-bit register reads the unit's driver made so far (a
    /// 64-bit read counts two).
    pub fn reads(&self) -> usize {
        self.state.lock().reads
    }

    /// A 32-bit register as the hardware holds it.
    pub fn register(&self, offset: u16) -> u32 {
        self.state.lock().registers.get(&offset).copied().unwrap_or(0)
    }

    fn record_offset(&self, index: u16) -> u16 {
        self.capability.fault_record_offset() + index * FAULT_RECORD_SIZE
    }

    /// Records a fault in record `index` as the hardware does: FI, SID, FR, T,
    /// then F, and PPF in the fault status. If the record is full, sets PFO instead.
    pub fn plant_fault(&self, index: u16, source: u16, address: u64, reason: u8, read: bool) {
        let offset = self.record_offset(index);
        let mut state = self.state.lock();
        let high = state.registers.get(&(offset + 12)).copied().unwrap_or(0);
        if high >> 31 == 1 {
            *state.registers.entry(FAULT_STATUS).or_insert(0) |= PRIMARY_FAULT_OVERFLOW;
            return;
        }
        state.registers.insert(offset, address as u32 & !0xfff);
        state.registers.insert(offset + 4, (address >> 32) as u32);
        state.registers.insert(offset + 8, u32::from(source));
        state.registers.insert(offset + 12, (1 << 31) | (u32::from(read) << 30) | u32::from(reason));
        *state.registers.entry(FAULT_STATUS).or_insert(0) |= PRIMARY_PENDING_FAULT;
    }

    /// Puts raw bits in record `index` (any reason, source, address, reserved
    /// bits) and sets the fault status bits `status` (PPF, PFO) as given.
    pub fn plant_record(&self, index: u16, low: u64, high: u64, status: u32) {
        let offset = self.record_offset(index);
        let mut state = self.state.lock();
        Self::write_quad(&mut state, offset, low);
        Self::write_quad(&mut state, offset + 8, high);
        *state.registers.entry(FAULT_STATUS).or_insert(0) |= status & (PRIMARY_FAULT_OVERFLOW | PRIMARY_PENDING_FAULT);
    }

    fn global_command(&self, state: &mut State, value: u32) {
        state.events.push(Event::GlobalCommand(value));
        if state.stuck {
            return;
        }
        let status = state.registers.get(&GLOBAL_STATUS).copied().unwrap_or(0);
        let mut new_status = status;
        if value & SET_ROOT_TABLE_POINTER != 0 {
            let low = state.registers.get(&ROOT_TABLE_ADDRESS).copied().unwrap_or(0);
            let high = state.registers.get(&(ROOT_TABLE_ADDRESS + 4)).copied().unwrap_or(0);
            state.events.push(Event::RootTableSet(u64::from(low) | (u64::from(high) << 32)));
            new_status |= SET_ROOT_TABLE_POINTER;
        }
        if value & WRITE_BUFFER_FLUSH != 0 {
            state.events.push(Event::WriteBufferFlush);
            if state.stalled.contains(&Stall::WriteBufferFlush) {
                // WBFS is set while the flush is in progress: for ever, here.
                new_status |= WRITE_BUFFER_FLUSH;
            }
        }
        match (value & TRANSLATION_ENABLE != 0, status & TRANSLATION_ENABLE != 0) {
            (true, false) => {
                state.events.push(Event::TranslationEnabled);
                new_status |= TRANSLATION_ENABLE;
            }
            (false, true) => {
                state.events.push(Event::TranslationDisabled);
                new_status &= !TRANSLATION_ENABLE;
            }
            _ => {}
        }
        state.registers.insert(GLOBAL_STATUS, new_status);
    }

    fn read_quad(state: &State, offset: u16) -> u64 {
        let low = state.registers.get(&offset).copied().unwrap_or(0);
        let high = state.registers.get(&(offset + 4)).copied().unwrap_or(0);
        u64::from(low) | (u64::from(high) << 32)
    }

    fn write_quad(state: &mut State, offset: u16, value: u64) {
        state.registers.insert(offset, value as u32);
        state.registers.insert(offset + 4, (value >> 32) as u32);
    }

    fn context_command(&self, state: &mut State) {
        let value = Self::read_quad(state, CONTEXT_COMMAND);
        if value & INVALIDATE_CONTEXT_CACHE == 0 || state.stuck {
            return;
        }
        let granularity = (value >> CONTEXT_REQUEST_SHIFT) & 3;
        let source = (value >> CONTEXT_SOURCE_SHIFT) as u16;
        state.events.push(Event::ContextInvalidation { granularity, source });
        let done =
            (value & !INVALIDATE_CONTEXT_CACHE & !(3 << CONTEXT_ACTUAL_SHIFT)) | (granularity << CONTEXT_ACTUAL_SHIFT);
        Self::write_quad(state, CONTEXT_COMMAND, done);
    }

    fn iotlb_command(&self, state: &mut State, recording: Recording) {
        let offset = self.extended.iotlb_offset() + 8;
        let value = Self::read_quad(state, offset);
        if value & INVALIDATE_IOTLB == 0 || state.stuck {
            return;
        }
        let granularity = (value >> IOTLB_REQUEST_SHIFT) & 3;
        let domain = (value >> IOTLB_DOMAIN_SHIFT) as u16;
        let address = Self::read_quad(state, self.extended.iotlb_offset());
        if recording == Recording::Record {
            state.events.push(Event::IotlbInvalidation { granularity, domain, address });
        }
        if state.stalled.contains(&Stall::IotlbInvalidation) {
            return;
        }
        // Like QEMU: a mask beyond MAMV is refused (actual granularity 0).
        let refused = granularity == 3
            && (state.refuses_page_selective
                || address & ADDRESS_MASK_BITS > u64::from(self.capability.maximum_address_mask()));
        let actual = if refused { 0 } else { granularity };
        let done = (value & !INVALIDATE_IOTLB & !(3 << IOTLB_ACTUAL_SHIFT)) | (actual << IOTLB_ACTUAL_SHIFT);
        Self::write_quad(state, offset, done);
    }
}

/// Whether a command is logged as an event (not when a stalled one finishes late).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recording {
    Record,
    Silent,
}

impl RegisterIo for FakeUnit {
    fn read8(&self, offset: u16) -> u8 {
        (self.read32(offset & !3) >> (8 * (offset & 3))) as u8
    }

    fn read16(&self, offset: u16) -> u16 {
        (self.read32(offset & !3) >> (8 * (offset & 2))) as u16
    }

    fn read32(&self, offset: u16) -> u32 {
        inside_the_page(offset);
        self.state.lock().reads += 1;
        match offset {
            CAPABILITY => self.capability.0 as u32,
            o if o == CAPABILITY + 4 => (self.capability.0 >> 32) as u32,
            EXTENDED_CAPABILITY => self.extended.0 as u32,
            o if o == EXTENDED_CAPABILITY + 4 => (self.extended.0 >> 32) as u32,
            _ => self.register(offset),
        }
    }

    fn write8(&self, offset: u16, value: u8) {
        panic!("VT-d registers take 32- and 64-bit writes, not a byte ({value:#x} at {offset:#x})");
    }

    fn write16(&self, offset: u16, value: u16) {
        panic!("VT-d registers take 32- and 64-bit writes, not 16 bits ({value:#x} at {offset:#x})");
    }

    fn write32(&self, offset: u16, value: u32) {
        inside_the_page(offset);
        let mut state = self.state.lock();
        let iotlb = self.extended.iotlb_offset() + 8;
        match offset {
            GLOBAL_COMMAND => self.global_command(&mut state, value),
            FAULT_STATUS => {
                // PFO is write-1-to-clear; PPF is read-only.
                *state.registers.entry(FAULT_STATUS).or_insert(0) &= !(value & PRIMARY_FAULT_OVERFLOW);
            }
            o if o == CONTEXT_COMMAND + 4 => {
                state.registers.insert(o, value);
                self.context_command(&mut state);
            }
            o if o == iotlb + 4 => {
                state.registers.insert(o, value);
                self.iotlb_command(&mut state, Recording::Record);
            }
            o if (self.record_offset(0)..self.record_offset(self.capability.fault_records())).contains(&o) => {
                // Only F (bit 31 of the record's last dword) is writable: write 1 to clear.
                if (o - self.record_offset(0)) % FAULT_RECORD_SIZE == 12 && value >> 31 == 1 {
                    *state.registers.entry(o).or_insert(0) &= !(1 << 31);
                    let any = (0..self.capability.fault_records()).any(|index| {
                        state.registers.get(&(self.record_offset(index) + 12)).is_some_and(|v| v >> 31 == 1)
                    });
                    if !any {
                        *state.registers.entry(FAULT_STATUS).or_insert(0) &= !PRIMARY_PENDING_FAULT;
                    }
                }
            }
            _ => {
                state.registers.insert(offset, value);
            }
        }
    }
}
