//! Matching and starting virtio-blk on real PCI hardware: the transitional
//! device (1af4:1001) through its legacy I/O registers, the modern-only one
//! (1af4:1042) through the structures its virtio capabilities locate.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::block::{BlockDevice, QueuedDisk};
use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{Cause, IoFailure, IoReturn, PciCause};
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::io::MmioRange;
use dmakit::pci::{Bar, PciDevice, VirtioCapability, VirtioStructure};
use dmakit::time::waiter_for_line;

use super::VirtioBlock;
use super::legacy::LegacyTransport;
use super::modern::{ModernRegisters, ModernTransport, Structure};
use super::registers::REGISTER_BLOCK_SIZE;
use super::transport::{DmaPlatforms, Interface, Transport};

/// The transitional virtio-blk device: legacy interface in I/O BAR 0.
const TRANSITIONAL_BLOCK: u16 = 0x1001;
/// The modern-only virtio-blk device (0x1040 + virtio device ID 2).
const MODERN_BLOCK: u16 = 0x1042;
/// The most bytes of one structure the driver maps: `RegisterIo` offsets are
/// 16 bits, and nothing the driver uses lies further in.
const STRUCTURE_MAP_LIMIT: u32 = 1 << 16;

/// The virtio-blk driver, on either virtio-PCI interface.
pub struct VirtioBlockDriver;

/// The four structures of a modern device, as its capabilities place them:
/// the first capability of each kind in a memory BAR (the specification asks
/// drivers to use the first one they can).
pub(super) struct ModernLayout {
    common: VirtioCapability,
    notify: VirtioCapability,
    isr: VirtioCapability,
    device: VirtioCapability,
}

impl ModernLayout {
    pub(super) fn find(device: &PciDevice) -> Option<ModernLayout> {
        let capabilities = device.virtio_capabilities();
        let first = |structure| {
            capabilities.iter().copied().find(|capability| {
                capability.structure == structure
                    && matches!(device.bars[usize::from(capability.bar)], Some(Bar::Memory { .. }))
            })
        };
        Some(ModernLayout {
            common: first(VirtioStructure::Common)?,
            notify: first(VirtioStructure::Notify)?,
            isr: first(VirtioStructure::Isr)?,
            device: first(VirtioStructure::Device)?,
        })
    }
}

/// Claims and maps one structure (at most [`STRUCTURE_MAP_LIMIT`] bytes of it).
fn claim(device: &PciDevice, capability: &VirtioCapability) -> Result<Structure<MmioRange>, IoFailure> {
    let length = capability.length.min(STRUCTURE_MAP_LIMIT);
    let registers = device
        .claim_memory_bar(usize::from(capability.bar), u64::from(capability.offset), u64::from(length))
        .inspect_err(|code| {
            log::error!(
                "virtio: cannot claim the {:?} structure (BAR {}, {:#x} + {:#x}): {code}",
                capability.structure,
                capability.bar,
                capability.offset,
                length
            )
        })?;
    Ok(Structure { registers, length })
}

/// The modern transport over the claimed structures, and where they lie.
pub(super) fn modern_transport(device: &PciDevice) -> Result<(ModernTransport<MmioRange>, String), IoFailure> {
    let missing = Cause::Pci(PciCause::CapabilityMissing("a virtio structure in a memory BAR"));
    let layout = ModernLayout::find(device).ok_or(IoFailure::new(IoReturn::NoResources, missing))?;
    let registers = ModernRegisters {
        common: claim(device, &layout.common)?,
        notify: claim(device, &layout.notify)?,
        notify_off_multiplier: layout.notify.notify_off_multiplier.unwrap_or(0),
        isr: claim(device, &layout.isr)?,
        device: claim(device, &layout.device)?,
    };
    let where_registers = format!(
        "common {:?}, notify {:?} (multiplier {})",
        registers.common.registers, registers.notify.registers, registers.notify_off_multiplier
    );
    let transport = ModernTransport::new(registers).inspect_err(|failure| log::error!("virtio: {failure}"))?;
    Ok((transport, where_registers))
}

/// The two platforms a virtio device's DMA may use: the bare machine, and its
/// PCI function's (its IOMMU domain on q35). Which one is decided by
/// `DmaRoute`, once the features are negotiated. A legacy device never goes
/// through an IOMMU in QEMU: it gets no domain (asking for its platform would
/// make one).
pub(super) fn dma_platforms(device: &PciDevice, interface: Interface) -> DmaPlatforms {
    let function = match interface {
        Interface::Legacy => platform(),
        Interface::Modern => device.dma_platform(),
    };
    DmaPlatforms { physical: platform(), function }
}

/// Starts the block driver over `transport` and describes it for the registry.
fn start_on<T: Transport + 'static>(
    device: &PciDevice,
    transport: T,
    where_registers: String,
) -> Result<DriverInstance, IoFailure> {
    let waiter = waiter_for_line(device.interrupt_line);
    let platforms = dma_platforms(device, transport.interface());
    // The block layer around the driver: it prepares and completes, queues,
    // waits and times out.
    let disk = VirtioBlock::new(transport, platforms)
        .and_then(|hardware| QueuedDisk::new(hardware, waiter))
        .inspect_err(|failure| log::error!("virtio-blk: start failed on {}: {failure}", device.location()))?;
    let disk = Arc::new(disk);
    let mut interrupt = "none (polling)".to_string();
    if let Some(line) = device.interrupt_line {
        let handler = disk.clone();
        if pic::register_handler(line, Arc::new(move || handler.interrupt())) {
            interrupt = line.to_string();
        }
    }
    let hardware = disk.hardware();
    let (offered, accepted) = hardware.features();
    let layout = hardware.slot_layout();
    let queue_address = hardware.queue_address().map_or("none".to_string(), |address| format!("{address:#x}"));
    let properties: Vec<(String, String)> = vec![
        ("transport".to_string(), format!("{}, {where_registers}", hardware.interface().name())),
        ("features".to_string(), format!("offered {offered:#x}, accepted {accepted:#x}")),
        ("dma".to_string(), hardware.dma_description().to_string()),
        ("queue-size".to_string(), hardware.queue_size().to_string()),
        ("queue-depth".to_string(), layout.depth.to_string()),
        ("queue-address".to_string(), queue_address),
        ("irq".to_string(), interrupt),
    ];
    Ok(DriverInstance { properties, disks: vec![disk] })
}

/// Starting a virtio device type on whichever transport its PCI function has.
pub(super) trait StartOn {
    /// Starts the device over `transport`, described by `where_registers`.
    fn start_on<T: Transport + 'static>(
        &self,
        device: &PciDevice,
        transport: T,
        where_registers: String,
    ) -> Result<DriverInstance, IoFailure>;
}

/// The device ids of one virtio device type: the transitional function
/// (driven through its legacy I/O registers) and the modern-only one.
#[derive(Clone, Copy)]
pub(super) struct VirtioIds {
    pub(super) transitional: u16,
    pub(super) modern: u16,
    /// Bytes of legacy registers the driver uses: BAR 0 must hold them.
    pub(super) legacy_bytes: u16,
}

/// How well a driver for `ids` fits `device`: the transitional function with
/// an I/O BAR 0 holding the registers it uses (its DMA bypasses any IOMMU,
/// which is what the q35 machine keeps it for), or the modern-only one with
/// its four virtio structures.
pub(super) fn probe(device: &PciDevice, ids: VirtioIds) -> u32 {
    if device.device_id == ids.transitional {
        return match device.bars[0] {
            Some(Bar::Io { size, .. }) if size >= ids.legacy_bytes => 1000,
            _ => 0,
        };
    }
    match device.device_id == ids.modern && ModernLayout::find(device).is_some() {
        true => 1000,
        false => 0,
    }
}

/// Claims `device`'s registers for `ids`' transport and starts it with `starter`.
pub(super) fn start(device: &PciDevice, ids: VirtioIds, starter: &impl StartOn) -> Result<DriverInstance, IoFailure> {
    match device.device_id {
        id if id == ids.transitional => {
            let registers = device.claim_io_bar(0)?;
            let where_registers = format!("{registers:?}");
            starter.start_on(device, LegacyTransport::new(registers), where_registers)
        }
        id if id == ids.modern => {
            let (transport, where_registers) = modern_transport(device)?;
            starter.start_on(device, transport, where_registers)
        }
        device_id => Err(IoFailure::new(IoReturn::BadArgument, Cause::Pci(PciCause::UnknownDevice { device_id }))),
    }
}

/// virtio-blk's ids.
const BLOCK_IDS: VirtioIds =
    VirtioIds { transitional: TRANSITIONAL_BLOCK, modern: MODERN_BLOCK, legacy_bytes: REGISTER_BLOCK_SIZE };

impl StartOn for VirtioBlockDriver {
    fn start_on<T: Transport + 'static>(
        &self,
        device: &PciDevice,
        transport: T,
        where_registers: String,
    ) -> Result<DriverInstance, IoFailure> {
        start_on(device, transport, where_registers)
    }
}

impl Driver for VirtioBlockDriver {
    fn name(&self) -> &'static str {
        "VirtioBlock"
    }

    fn disk_prefix(&self) -> &'static str {
        "vd"
    }

    fn matches(&self) -> &'static [Match] {
        &[
            Match::Device { vendor: 0x1af4, device: TRANSITIONAL_BLOCK },
            Match::Device { vendor: 0x1af4, device: MODERN_BLOCK },
        ]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        probe(device, BLOCK_IDS)
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure> {
        start(device, BLOCK_IDS, self)
    }
}
