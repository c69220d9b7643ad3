//! Matching and starting virtio-blk on real PCI hardware.

use alloc::format;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec;

use dmakit::arch::pic;
use dmakit::dma::IoReturn;
use dmakit::dma::kernel_platform::platform;
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::pci::PciDevice;
use dmakit::time::{InterruptWaiter, PollingWaiter, Waiter};

use super::VirtioBlock;
use super::registers::REGISTER_BLOCK_SIZE;

static INTERRUPT_WAITER: InterruptWaiter = InterruptWaiter;
static POLLING_WAITER: PollingWaiter = PollingWaiter;

/// The virtio-blk driver (transitional device 1af4:1001, legacy interface).
pub struct VirtioBlockDriver;

impl Driver for VirtioBlockDriver {
    fn name(&self) -> &'static str {
        "VirtioBlock"
    }

    fn disk_prefix(&self) -> &'static str {
        "vd"
    }

    fn matches(&self) -> &'static [Match] {
        &[Match::Device { vendor: 0x1af4, device: 0x1001 }]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        // Only the legacy interface is implemented: it needs I/O BAR 0.
        match device.bars[0] {
            Some(dmakit::pci::Bar::Io { size, .. }) if size >= REGISTER_BLOCK_SIZE => 1000,
            _ => 0,
        }
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoReturn> {
        let registers = device.claim_io_bar(0)?;
        let waiter: &'static dyn Waiter = match device.interrupt_line {
            Some(_) => &INTERRUPT_WAITER,
            None => &POLLING_WAITER,
        };
        // The kernel's driver interface takes the bare code; the log keeps the cause.
        let disk = VirtioBlock::new(registers, platform(), waiter)
            .inspect_err(|failure| log::error!("virtio-blk: start failed: {failure}"))?;
        let disk = Arc::new(disk);
        let mut interrupt = "none (polling)".to_string();
        if let Some(line) = device.interrupt_line {
            let handler = disk.clone();
            if pic::register_handler(line, Arc::new(move || handler.handle_interrupt())) {
                interrupt = line.to_string();
            }
        }
        let (offered, accepted) = disk.features();
        Ok(DriverInstance {
            properties: vec![
                ("features".to_string(), format!("offered {offered:#x}, accepted {accepted:#x}")),
                ("queue-size".to_string(), disk.queue_size().to_string()),
                ("queue-address".to_string(), format!("{:#x}", disk.queue_address())),
                ("irq".to_string(), interrupt),
            ],
            disks: vec![disk],
        })
    }
}
