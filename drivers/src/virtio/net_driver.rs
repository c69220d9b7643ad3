//! Matching and starting virtio-net on real PCI hardware: the transitional
//! device (1af4:1000) through its legacy I/O registers, the modern-only one
//! (1af4:1041) through its virtio structures. The interface is started with
//! every buffer prepared once and registered as `net0`, `net1`, ...; its
//! interrupt, once a handler is on the line, only wakes the CPU: whoever
//! polls the interface (the network stack) takes the frames.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::arch::pic;
use dmakit::dma::{IoFailure, Specification, TransferOptions};
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::net::registry::{self, LockedNic, NetInterface};
use dmakit::net::{Interrupts, NetworkHardware, Nic};
use dmakit::pci::PciDevice;

use super::driver::{self, StartOn, VirtioIds};
use super::net::VirtioNet;
use super::transport::Transport;

/// The transitional virtio-net device: legacy interface in I/O BAR 0.
const TRANSITIONAL_NET: u16 = 0x1000;
/// The modern-only virtio-net device (0x1040 + virtio device ID 1).
const MODERN_NET: u16 = 0x1041;

/// The legacy register block the driver uses: the common header (0x14 bytes)
/// and the MAC and status words it reads (8 bytes). QEMU's BAR is 32 bytes.
const LEGACY_REGISTERS_USED: u16 = 0x14 + 8;

/// The virtio-net driver, on either virtio-PCI interface.
pub struct VirtioNetDriver;

/// virtio-net's ids.
const NET_IDS: VirtioIds =
    VirtioIds { transitional: TRANSITIONAL_NET, modern: MODERN_NET, legacy_bytes: LEGACY_REGISTERS_USED };

impl StartOn for VirtioNetDriver {
    fn start_on<T: Transport + 'static>(
        &self,
        device: &PciDevice,
        transport: T,
        where_registers: String,
    ) -> Result<DriverInstance, IoFailure> {
        start_on(device, transport, where_registers)
    }
}

/// Starts the interface over `transport` and registers it.
fn start_on<T: Transport + 'static>(
    device: &PciDevice,
    transport: T,
    where_registers: String,
) -> Result<DriverInstance, IoFailure> {
    let platforms = driver::dma_platforms(device, transport.interface());
    let hardware = VirtioNet::new(transport, platforms)
        .inspect_err(|failure| log::error!("virtio-net: start failed on {}: {failure}", device.location()))?;
    let (offered, accepted) = hardware.features();
    let interface_name = hardware.interface().name();
    let (options, buffers) = buffer_options();
    let nic = Nic::start(hardware, &options)?;
    let mac = nic.mac();
    let shape = nic.shape();
    let name = registry::next_name();
    let mac_text = mac.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<String>>().join(":");
    let interface = Arc::new(LockedNic::new(name.clone(), nic));
    let irq = wire_interrupt(device, &interface);
    let properties: Vec<(String, String)> = vec![
        ("interface".to_string(), name),
        ("mac".to_string(), mac_text),
        ("transport".to_string(), format!("{interface_name}, {where_registers}")),
        ("features".to_string(), format!("offered {offered:#x}, accepted {accepted:#x}")),
        (
            "buffers".to_string(),
            format!("{} receive, {} transmit, prepared once{buffers}", shape.receive_depth, shape.transmit_depth),
        ),
        ("irq".to_string(), irq),
    ];
    registry::register(interface);
    Ok(DriverInstance { properties, disks: vec![] })
}

/// The options every buffer is prepared with: by default none; booted with
/// `net.restrict=32`, a 32-bit restriction, so that buffers above 4 GiB are
/// bounced and `synchronize_range` is what moves every frame's bytes. Also
/// what `ioreg` adds to its description of the buffers.
fn buffer_options() -> (TransferOptions, &'static str) {
    match dmakit::command_line::option(dmakit::boot::command_line(), "net.restrict") {
        Some("32") => (
            TransferOptions { restrict: Some(Specification::UNLIMITED_32), ..TransferOptions::default() },
            ", restricted to 32 bits (net.restrict=32): above 4 GiB they bounce",
        ),
        Some(other) => {
            log::warn!("net.restrict={other}: only 32 is known; buffers are not restricted");
            (TransferOptions::default(), "")
        }
        None => (TransferOptions::default(), ""),
    }
}

/// Registers the interface's interrupt handler on its PCI line and only then
/// asks the device to interrupt (a shared line must never be asserted with
/// nobody to quiet it). Without a line, or with the line full, the interface
/// stays polled (the timer's tick wakes the CPU). Returns what `ioreg` shows.
fn wire_interrupt<H: NetworkHardware + 'static>(device: &PciDevice, interface: &Arc<LockedNic<H>>) -> String {
    let Some(line) = device.interrupt_line else { return "none (polled on the timer tick)".to_string() };
    let handler = interface.clone();
    if !pic::register_handler(line, Arc::new(move || handler.interrupt())) {
        return format!("{line} is full: polled on the timer tick");
    }
    match interface.set_interrupts(Interrupts::Wanted) {
        Ok(()) => line.to_string(),
        Err(failure) => {
            log::error!("virtio-net: interrupts not enabled: {failure}");
            format!("{line}, but the device was not asked to interrupt: polled on the timer tick")
        }
    }
}

impl Driver for VirtioNetDriver {
    fn name(&self) -> &'static str {
        "VirtioNet"
    }

    fn disk_prefix(&self) -> &'static str {
        "net"
    }

    fn matches(&self) -> &'static [Match] {
        &[
            Match::Device { vendor: 0x1af4, device: TRANSITIONAL_NET },
            Match::Device { vendor: 0x1af4, device: MODERN_NET },
        ]
    }

    fn probe(&self, device: &PciDevice) -> u32 {
        driver::probe(device, NET_IDS)
    }

    fn start(&self, device: &PciDevice) -> Result<DriverInstance, IoFailure> {
        driver::start(device, NET_IDS, self)
    }
}
