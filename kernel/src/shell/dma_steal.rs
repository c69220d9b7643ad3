//! `experiment dma-steal DEV`: a device reads kernel memory no driver lent it
//! and writes it to its disk, as a malicious device would; an IOMMU stops it.
//!
//! A device that masters the bus can read and write any address its bus
//! carries: nothing in the device itself asks whether the driver lent it the
//! memory. Thunderclap (Markettos et al., NDSS 2019) built such devices. QEMU's
//! devices are honest, so the experiment plays the malicious one with the PIIX
//! IDE bus master: the shell plants a secret in a frame of kernel memory, then
//! writes one sector with the DMA layer's hook aiming the device's first PRD
//! entry at the secret's address instead of the buffer's (`Addresses::Elsewhere`).
//! The driver programs the device as ever; the device reads where the entry
//! says.
//! - Without an IOMMU (`pc`) the address is physical: the device reads the
//!   secret and writes it to the disk, where the host can find it.
//! - Behind VT-d (`q35`) the address is an IOVA of the device's domain, which
//!   maps only what the DMA layer lent it: the read faults, the unit records
//!   the device's requester id and the address, and the write fails with that
//!   fault. QEMU then hands the device zeros for the blocked read, so the
//!   sector is written with zeros: the experiment puts it back.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::PhysAddr;

use crate::block::BlockDevice;
use crate::dma::experiment;
use crate::dma::hooks::Site;
use crate::dma::kernel_platform::platform;
use crate::dma::{Cause, DmaAddr, DmaBuffer, DmaPlatform, IoDirection};
use crate::memory::Constraints;
use crate::memory::reserved::ReservedFrame;
use crate::pci::PciDevice;
use crate::{driver, println};

/// The secret, repeated over the sector the device steals.
const SECRET: &[u8] = b"dmakit secret: the kernel's key is 5ec2e7c0ffee. ";
/// What the buffer the driver lends the device holds: what the write meant to put on the disk.
const INNOCENT: &[u8] = b"an innocent sector. ";
/// One sector: the PIIX's are 512 bytes.
const SECTOR: usize = 512;
/// A PRD entry holds a 32-bit address, so the secret lies below 4 GiB.
const FOUR_GIB: u64 = 1 << 32;

/// `experiment dma-steal DEV`.
pub fn dma_steal(name: &str) -> Result<(), String> {
    let disk = driver::find_block_device(name).ok_or_else(|| format!("no disk called '{name}' (try lsblk)"))?;
    if disk.driver_name() != "PiixAta" || disk.block_size() as usize != SECTOR {
        return Err(format!(
            "{name} is a {} disk: the experiment plays the malicious device with the PIIX IDE bus master \
             (try lsblk; hda)",
            disk.driver_name()
        ));
    }
    let function = function_of(name)?;
    let lba = disk.block_count().checked_sub(1).ok_or_else(|| format!("{name} has no sectors"))?;
    let before = sector(&disk, lba)?;
    let mut secret = ReservedFrame::below(PhysAddr::new(FOUR_GIB))
        .map_err(|error| format!("no frame below 4 GiB for the secret: {error:?}"))?;
    secret.write(0, &repeated(SECRET));
    let address = secret.address().as_u64();
    println!("planted a secret at {address:#x}, in a frame of kernel memory no driver lent any device:");
    println!("  \"{}\"", text(SECRET));
    say_what_the_iommu_maps(&function, address);
    let result = steal(name, &disk, lba, address);
    let after = sector(&disk, lba)?;
    // The secret frame goes back to the allocator without its secret.
    secret.write(0, &[0; SECTOR]);
    drop(secret);
    println!("sector {lba} of {name} now:  \"{}\"", text(&after[..SECRET.len()]));
    if after == repeated(SECRET) {
        println!("THE SECRET IS ON THE DISK: the device read memory nobody lent it, and nothing stopped it.");
        println!("It stays there: quit (Ctrl-A X) and the host finds it in {name}'s image (build/ata.img unless");
        println!("ATA_DISK= named another): grep -c 5ec2e7c0ffee build/ata.img. make reset-disks puts it back.");
        return result;
    }
    let stolen = after.windows(SECRET.len()).any(|window| window == SECRET);
    println!(
        "{}",
        if stolen { "PART OF THE SECRET IS ON THE DISK." } else { "not one byte of the secret reached the disk." }
    );
    if after != before {
        // What QEMU's device wrote for the blocked read (zeros): put back.
        write_sector(&disk, lba, &before)?;
        println!("The device wrote what the blocked read gave it (QEMU gives zeros); sector {lba} is put back.");
    }
    result
}

/// The write with the device's first PRD entry aimed at `address`.
fn steal(name: &str, disk: &Arc<dyn BlockDevice>, lba: u64, address: u64) -> Result<(), String> {
    let mut innocent = buffer(IoDirection::Out)?;
    innocent.write_bytes(0, &repeated(INNOCENT)).map_err(|failure| format!("{failure}"))?;
    println!("writing sector {lba} of {name} from a buffer holding \"{}\"...,", text(INNOCENT));
    println!("with the device's PRD entry aimed at the secret instead (a device going where it was not sent):");
    let site = Site::of(platform().accounting());
    experiment::arm_elsewhere(site, DmaAddr::new(address));
    let result = disk.write(lba, 1, &mut innocent, 0);
    if experiment::disarm_elsewhere(site) {
        return Err(String::from("the write never reached the DMA layer: nothing was aimed anywhere"));
    }
    if let Some(given) = disk.last_segments().first() {
        println!("  the device was given {:#x}, {} bytes", given.address.as_u64(), given.length);
    }
    match result {
        Ok(()) => println!("the write finished: Ok"),
        Err(failure) => {
            println!("the write failed: {failure}");
            if let Cause::IommuFault(fault) = failure.cause()
                && fault.address == address & !0xfff
            {
                println!("  the unit recorded the device and the page it tried: the secret's, refused.");
            }
        }
    }
    Ok(())
}

/// What the device's IOMMU domain maps at `address`, if it has one.
fn say_what_the_iommu_maps(function: &PciDevice, address: u64) {
    let location = function.location();
    match crate::iommu::mapper_for(function.requester_id()) {
        Some(mapper) if mapper.translating() => match mapper.translate(address) {
            None => println!("{location} is behind an IOMMU whose domain maps nothing at {address:#x}."),
            Some(page) => println!("{location}'s domain maps {address:#x} to {:#x}: the read may land", page.as_u64()),
        },
        Some(_) => println!("{location} is behind an IOMMU, but its domain passes DMA through untranslated."),
        None => println!("{location} is behind no IOMMU: every address it puts on the bus is physical memory."),
    }
}

/// The PCI function disk `name` lives on.
pub(super) fn function_of(name: &str) -> Result<PciDevice, String> {
    crate::pci::enumerate()
        .into_iter()
        .find(|function| driver::disks_of_function(&function.location()).iter().any(|disk| disk == name))
        .ok_or_else(|| format!("{name} is on no PCI function (ioreg shows where each disk lives)"))
}

/// `pattern` over one sector.
fn repeated(pattern: &[u8]) -> Vec<u8> {
    pattern.iter().copied().cycle().take(SECTOR).collect()
}

/// `bytes` as text, with a dot for each byte that is not printable ASCII.
fn text(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| if (0x20..0x7f).contains(&byte) { byte as char } else { '.' }).collect()
}

/// A one-sector buffer below 4 GiB.
fn buffer(direction: IoDirection) -> Result<DmaBuffer, String> {
    let below = Constraints { below: Some(PhysAddr::new(FOUR_GIB)), ..Constraints::NONE };
    super::commands::buffer(SECTOR as u64, direction, below)
}

/// Sector `lba`, read the ordinary way.
fn sector(disk: &Arc<dyn BlockDevice>, lba: u64) -> Result<Vec<u8>, String> {
    let mut check = buffer(IoDirection::In)?;
    disk.read(lba, 1, &mut check, 0).map_err(|failure| format!("reading sector {lba} failed: {failure}"))?;
    check.to_vec(0, SECTOR).map_err(|failure| format!("{failure}"))
}

/// Writes `data` to sector `lba` the ordinary way.
fn write_sector(disk: &Arc<dyn BlockDevice>, lba: u64, data: &[u8]) -> Result<(), String> {
    let mut source = buffer(IoDirection::Out)?;
    source.write_bytes(0, data).map_err(|failure| format!("{failure}"))?;
    disk.write(lba, 1, &mut source, 0).map_err(|failure| format!("putting sector {lba} back failed: {failure}"))
}
