//! Matching and starting the PIIX IDE controller on real PCI hardware.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::block::{BlockDevice, QueuedDisk};
use dmakit::dma::IoFailure;
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::io::RegisterIo;
use dmakit::pci::{Bar, PciDevice};
use dmakit::time::InterruptWaiter;

use super::registers::BM_CHANNEL_SIZE;
use super::{AtaDisk, Channel, Interrupts};
use crate::window::Window;

static WAITER: InterruptWaiter = InterruptWaiter;

/// Legacy IRQ of each channel in compatibility mode.
const CHANNEL_IRQ: [u8; 2] = [14, 15];

/// The PIIX IDE bus-master driver.
pub struct PiixAtaDriver;

type Registers = Box<dyn RegisterIo>;

impl Driver for PiixAtaDriver {
    fn name(&self) -> &'static str {
        "PiixAta"
    }

    fn disk_prefix(&self) -> &'static str {
        "hd"
    }

    fn matches(&self) -> &'static [Match] {
        &[Match::Device { vendor: 0x8086, device: 0x7010 }, Match::Class { class: 0x01, subclass: 0x01 }]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        // Bus-master DMA needs BAR 4; the PIIX3 itself is the best match.
        match device.bars[4] {
            Some(Bar::Io { size, .. }) if size >= 2 * BM_CHANNEL_SIZE => {
                if (device.vendor_id, device.device_id) == (0x8086, 0x7010) { 1000 } else { 500 }
            }
            _ => 0,
        }
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure> {
        let bus_master: Arc<Registers> = Arc::new(Box::new(device.claim_io_bar(4)?));
        let mut disks: Vec<Arc<dyn BlockDevice>> = Vec::new();
        let mut properties = Vec::new();
        for channel_number in 0..2u8 {
            let Ok((command, control)) = device.claim_legacy_ide(channel_number) else {
                continue;
            };
            let window: Registers =
                Box::new(Window::new(bus_master.clone(), u16::from(channel_number) * BM_CHANNEL_SIZE));
            let channel = Channel::new(
                Box::new(command) as Registers,
                Box::new(control),
                window,
                device.dma_platform(),
                &WAITER,
                Interrupts::Enabled,
            )?;
            let channel = Arc::new(channel);
            let irq = CHANNEL_IRQ[usize::from(channel_number)];
            let mut channel_disks: Vec<Arc<QueuedDisk<AtaDisk<Registers>>>> = Vec::new();
            for drive in 0..2 {
                let identity = match channel.identify(drive) {
                    None => continue,
                    Some(Ok(identity)) => identity,
                    Some(Err(failure)) => {
                        log::error!("PiixAta: channel {channel_number}, drive {drive} not driven: {failure}");
                        continue;
                    }
                };
                match QueuedDisk::new(AtaDisk::new(channel.clone(), drive, identity), &WAITER) {
                    Ok(disk) => channel_disks.push(Arc::new(disk)),
                    Err(failure) => log::error!("PiixAta: channel {channel_number}, drive {drive}: {failure}"),
                }
            }
            let found = channel_disks.len();
            // Both drives share the channel's line: each disk's work loop is told.
            let handlers = channel_disks.clone();
            pic::register_handler(
                irq,
                Arc::new(move || {
                    for disk in &handlers {
                        disk.interrupt();
                    }
                }),
            );
            disks.extend(channel_disks.into_iter().map(|disk| disk as Arc<dyn BlockDevice>));
            // A channel without a drive is dropped, and its table freed, once
            // this loop ends: only a kept table is worth an address.
            let table = channel
                .table_address()
                .filter(|_| found > 0)
                .map(|address| format!(", prd-table {:#x}", address.as_u64()));
            let described = format!("irq {irq}, {found} disk(s){}", table.unwrap_or_default());
            properties.push((format!("channel{channel_number}"), described));
        }
        properties.push(("prd-entries".to_string(), super::prd::ENTRIES_PER_TABLE.to_string()));
        Ok(DriverInstance { disks, properties })
    }
}
