//! Matching and starting an NVMe controller on real PCI hardware (class 01h,
//! subclass 08h, programming interface 02h: QEMU's `-device nvme`). Its
//! registers are in memory BAR 0; namespace 1 becomes `nvme0n1`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::block::{BlockDevice, QueuedDisk};
use dmakit::dma::{Cause, IoFailure, IoReturn, PciCause};
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::io::MmioRange;
use dmakit::pci::{Bar, PciDevice};
use dmakit::time::waiter_for_line;

use super::controller::REGISTER_OFFSET_REACH;
use super::{Controller, NvmeDisk, NvmeOptions};

/// The controller's registers: memory BAR 0.
const REGISTERS_BAR: usize = 0;

/// The NVMe driver.
pub struct NvmeDriver;

impl Driver for NvmeDriver {
    fn name(&self) -> &'static str {
        "Nvme"
    }

    fn disk_prefix(&self) -> &'static str {
        "nvme"
    }

    /// Linux's convention: controller `index`, namespace 1.
    fn disk_name(&self, index: u8) -> String {
        format!("nvme{index}n1")
    }

    fn matches(&self) -> &'static [Match] {
        &[Match::Class { class: 0x01, subclass: 0x08 }]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        match (device.interface, device.bars[REGISTERS_BAR]) {
            (0x02, Some(Bar::Memory { .. })) => 1000,
            _ => 0,
        }
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure> {
        let Some(Bar::Memory { size, .. }) = device.bars[REGISTERS_BAR] else {
            let cause = Cause::Pci(PciCause::BarMissing { slot: REGISTERS_BAR, kind: "memory" });
            return Err(IoFailure::new(IoReturn::BadArgument, cause));
        };
        // As much of the BAR as a register offset reaches: the doorbells of
        // both queue pairs lie within it at any stride up to CAP.DSTRD 12,
        // which `Controller::new` checks against CAP.
        let mapped = size.min(REGISTER_OFFSET_REACH);
        let registers: Arc<MmioRange> = Arc::new(device.claim_memory_bar(REGISTERS_BAR, 0, mapped)?);
        let waiter = waiter_for_line(device.interrupt_line);
        let controller = Controller::new(registers, mapped, waiter)?;
        let hardware = NvmeDisk::new(controller, device.dma_platform(), NvmeOptions::DEFAULT)
            .inspect_err(|failure| log::error!("Nvme: start failed on {}: {failure}", device.location()))?;
        let disk = Arc::new(QueuedDisk::new(hardware, waiter)?);
        let mut interrupt = "none (polling)".to_string();
        if let Some(line) = device.interrupt_line {
            let handler = disk.clone();
            if pic::register_handler(line, Arc::new(move || handler.interrupt())) {
                disk.hardware().enable_interrupts();
                interrupt = line.to_string();
            }
        }
        let link = disk.hardware().link();
        let properties: Vec<(String, String)> = vec![
            ("model".to_string(), link.identity.model.clone()),
            ("queue".to_string(), format!("{} entries, {} slots", link.entries, link.depth)),
            ("max-request".to_string(), format!("{} KiB", link.max_request_bytes / 1024)),
            ("data-pointers".to_string(), format!("{:?}", link.choice)),
            ("irq".to_string(), interrupt),
        ];
        Ok(DriverInstance { disks: vec![disk], properties })
    }
}
