//! Matching and starting virtio-net on real PCI hardware: the transitional
//! device (1af4:1000) through its legacy I/O registers, the modern-only one
//! (1af4:1041) through its virtio structures. The interface is started with
//! every buffer prepared once and registered as `net0`, `net1`, ...; it is
//! polled (the interrupt path comes with the network stack).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use dmakit::dma::kernel_platform::platform;
use dmakit::dma::{IoFailure, TransferOptions};
use dmakit::driver::{Driver, DriverInstance, Match};
use dmakit::net::Nic;
use dmakit::net::registry::{self, LockedNic};
use dmakit::pci::PciDevice;

use super::driver::{self, StartOn, VirtioIds};
use super::net::VirtioNet;
use super::transport::{DmaPlatforms, Interface, Transport};

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
    let function = match transport.interface() {
        Interface::Legacy => platform(),
        Interface::Modern => device.dma_platform(),
    };
    let platforms = DmaPlatforms { physical: platform(), function };
    let hardware = VirtioNet::new(transport, platforms)
        .inspect_err(|failure| log::error!("virtio-net: start failed on {}: {failure}", device.location()))?;
    let (offered, accepted) = hardware.features();
    let interface = hardware.interface().name();
    let nic = Nic::start(hardware, &TransferOptions::default())?;
    let mac = nic.mac();
    let shape = nic.shape();
    let name = registry::next_name();
    let mac_text = mac.iter().map(|byte| format!("{byte:02x}")).collect::<Vec<String>>().join(":");
    let properties: Vec<(String, String)> = vec![
        ("interface".to_string(), name.clone()),
        ("mac".to_string(), mac_text),
        ("transport".to_string(), format!("{interface}, {where_registers}")),
        ("features".to_string(), format!("offered {offered:#x}, accepted {accepted:#x}")),
        (
            "buffers".to_string(),
            format!("{} receive, {} transmit, prepared once", shape.receive_depth, shape.transmit_depth),
        ),
    ];
    registry::register(Arc::new(LockedNic::new(name, nic)));
    Ok(DriverInstance { properties, disks: vec![] })
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
