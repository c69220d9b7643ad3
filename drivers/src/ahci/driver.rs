//! Matching and starting an AHCI HBA on real PCI hardware (QEMU's ICH9 AHCI,
//! 8086:2922, or any SATA controller in AHCI mode, class 01h subclass 06h).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::block::{BlockDevice, QueuedDisk};
use dmakit::dma::{Cause, IoFailure, IoReturn, PciCause};
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::io::{MmioRange, RegisterIo};
use dmakit::pci::{Bar, PciDevice};
use dmakit::time::waiter_for_line;

use super::registers::{PX_SIG, SIGNATURE_ATAPI, port_register};
use super::{AhciPort, Hba};

/// The ABAR: the HBA's registers are in memory BAR 5.
const ABAR: usize = 5;
/// The ICH9's AHCI function, the one QEMU emulates.
const ICH9_AHCI: u16 = 0x2922;
/// The most register bytes the driver maps: 32 ports end at 0x1100, and
/// register offsets are 16 bits.
const REGISTER_MAP_LIMIT: u64 = 1 << 16;

/// The AHCI driver.
pub struct AhciDriver;

type Disk = QueuedDisk<AhciPort<MmioRange>>;

impl Driver for AhciDriver {
    fn name(&self) -> &'static str {
        "Ahci"
    }

    fn disk_prefix(&self) -> &'static str {
        "sd"
    }

    fn matches(&self) -> &'static [Match] {
        &[Match::Device { vendor: 0x8086, device: ICH9_AHCI }, Match::Class { class: 0x01, subclass: 0x06 }]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        match device.bars[ABAR] {
            Some(Bar::Memory { .. }) if (device.vendor_id, device.device_id) == (0x8086, ICH9_AHCI) => 1000,
            Some(Bar::Memory { .. }) => 500,
            _ => 0,
        }
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure> {
        let Some(Bar::Memory { size, .. }) = device.bars[ABAR] else {
            let cause = Cause::Pci(PciCause::BarMissing { slot: ABAR, kind: "memory" });
            return Err(IoFailure::new(IoReturn::BadArgument, cause));
        };
        let mapped_bytes = size.min(REGISTER_MAP_LIMIT);
        let registers = Arc::new(device.claim_memory_bar(ABAR, 0, mapped_bytes)?);
        let waiter = waiter_for_line(device.interrupt_line);
        let hba = Hba::reset(registers.clone(), mapped_bytes, waiter)?;
        let capabilities = hba.capabilities();
        let mut disks: Vec<Arc<Disk>> = Vec::new();
        let mut port_lines = Vec::new();
        for number in hba.ports_with_device() {
            if registers.read32(port_register(number, PX_SIG)) == SIGNATURE_ATAPI {
                port_lines.push(format!("{number}: ATAPI, not driven"));
                continue;
            }
            let started = AhciPort::new(registers.clone(), capabilities, number, device.dma_platform(), waiter)
                .and_then(|port| QueuedDisk::new(port, waiter));
            match started {
                Ok(disk) => {
                    port_lines.push(format!("{number}: {}", disk.hardware().identity().model));
                    disks.push(Arc::new(disk));
                }
                Err(failure) => {
                    log::error!("Ahci: port {number} not started: {failure}");
                    port_lines.push(format!("{number}: failed ({})", failure.code()));
                }
            }
        }
        let mut interrupt = "none (polling)".to_string();
        if let Some(line) = device.interrupt_line {
            // The line may be shared: every disk's handler looks at its own port.
            let handlers = disks.clone();
            if pic::register_handler(line, Arc::new(move || handlers.iter().for_each(|disk| disk.interrupt()))) {
                interrupt = line.to_string();
                hba.enable_interrupts();
            }
        }
        let ncq = disks.iter().map(|disk| disk.hardware().uses_ncq().to_string()).collect::<Vec<_>>().join(", ");
        let depth = disks.iter().map(|disk| disk.queue_depth().to_string()).collect::<Vec<_>>().join(", ");
        let properties: Vec<(String, String)> = vec![
            ("version".to_string(), format!("{:#x}", hba.version())),
            ("ports".to_string(), port_lines.join("; ")),
            ("ncq".to_string(), format!("HBA {}, disks [{ncq}]", capabilities.ncq)),
            ("depth".to_string(), format!("[{depth}] of {} slots", capabilities.slots)),
            ("64-bit".to_string(), capabilities.addresses_64_bit.to_string()),
            ("irq".to_string(), interrupt),
        ];
        let disks = disks.into_iter().map(|disk| disk as Arc<dyn BlockDevice>).collect();
        Ok(DriverInstance { disks, properties })
    }
}
