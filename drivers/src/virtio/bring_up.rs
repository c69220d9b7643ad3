//! The steps of bringing a virtio device up that are the same for every device
//! type (virtio 1.0, 3.1.1): reset, ACKNOWLEDGE and DRIVER, feature negotiation
//! with the `FEATURES_OK` handshake on a modern device, the DMA route the
//! features call for, each queue set up, DRIVER_OK; and giving up so that the
//! device ends reset and FAILED, holding no memory of ours. virtio-blk
//! (`block.rs`) and virtio-net (`net.rs`) each add their own queues, memory
//! and configuration between these steps.

use dmakit::block::Quiesced;
use dmakit::dma::{Cause, DmaPlatform, IoFailure, IoReturn, VirtioCause};

use super::registers::*;
use super::transport::{DmaPlatforms, DmaRoute, Interface, Transport};
use super::virtqueue::Virtqueue;

/// What the negotiation settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// Features the device offered.
    pub offered: u64,
    /// Features the driver accepted.
    pub accepted: u64,
    /// How the device reaches memory, from the accepted features.
    pub dma_route: DmaRoute,
    /// The status byte so far (ACKNOWLEDGE, DRIVER, and FEATURES_OK on a
    /// modern device): [`ready`] adds DRIVER_OK.
    status: u8,
}

impl Negotiated {
    /// The platform the device's memory goes through.
    pub fn platform(&self, platforms: &DmaPlatforms) -> &'static dyn DmaPlatform {
        self.dma_route.platform(platforms)
    }
}

/// Resets the device, says ACKNOWLEDGE and DRIVER, and accepts those of the
/// offered features the interface and `device_features` (the device type's
/// own) allow; on a modern device sets `FEATURES_OK` and reads it back: a
/// device that cleared it does not work with them. On failure the device is
/// reset and FAILED (nothing of ours is in it yet).
pub fn negotiate<T: Transport>(transport: &T, device_features: u64) -> Result<Negotiated, IoFailure> {
    let interface = transport.interface();
    transport.reset()?;
    transport.set_status(STATUS_ACKNOWLEDGE);
    let mut status = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    transport.set_status(status);
    let offered = transport.device_features();
    let handshake = interface.negotiate(offered, device_features).and_then(|accepted| {
        transport.set_driver_features(accepted);
        if interface == Interface::Modern {
            status |= STATUS_FEATURES_OK;
            transport.set_status(status);
            if transport.status() & STATUS_FEATURES_OK == 0 {
                return Err(IoFailure::new(IoReturn::IoError, Cause::Virtio(VirtioCause::FeaturesRefused)));
            }
        }
        Ok(accepted)
    });
    let accepted = handshake.inspect_err(|_| {
        let _ = give_up(transport);
    })?;
    Ok(Negotiated { offered, accepted, dma_route: DmaRoute::choose(interface, accepted), status })
}

/// Allocates queue `queue` at the size the interface and the device allow
/// (at least `min_size` entries) on `platform`, and gives it to the device.
/// If the device refuses it, the device is reset before the memory goes back.
pub fn set_up_queue<T: Transport>(
    transport: &T,
    platform: &'static dyn DmaPlatform,
    queue: u16,
    min_size: u16,
) -> Result<Virtqueue, IoFailure> {
    let interface = transport.interface();
    let size = interface.queue_size(transport.max_queue_size(queue));
    if size < min_size {
        let cause = Cause::Virtio(VirtioCause::QueueTooSmall { size });
        return Err(IoFailure::new(IoReturn::NoResources, cause));
    }
    let ring = Virtqueue::allocate(platform, queue, size, interface)?;
    if let Err(failure) = transport.set_up_queue(queue, size, ring.areas()) {
        // The device may hold some of the addresses already.
        ring.release_after(&transport.reset());
        return Err(failure);
    }
    Ok(ring)
}

/// Says DRIVER_OK: the device may use its queues from now.
pub fn ready<T: Transport>(transport: &T, negotiated: &Negotiated) {
    transport.set_status(negotiated.status | STATUS_DRIVER_OK);
}

/// Tells the device the driver gave up: reset (it forgets its features and
/// whatever it was given), then FAILED. Memory the device was given must be
/// released only after the reset, as [`super::virtqueue::release_after`] does.
pub fn give_up<T: Transport>(transport: &T) -> Result<(), IoFailure> {
    let reset = transport.reset();
    transport.set_status(STATUS_FAILED);
    reset
}

/// What a quiesce says after the reset of a shut-down: stopped, or still
/// running if the device did not confirm the reset (its memory was leaked).
pub fn quiesced(reset: Result<(), IoFailure>) -> Quiesced {
    match reset {
        Ok(()) => Quiesced::Stopped,
        Err(failure) => Quiesced::StillRunning(failure),
    }
}

/// A dropped driver's shut-down: a reset that was not confirmed is logged
/// (the memory the device held was leaked, never freed under it).
pub fn dropped(device: &str, reset: Result<(), IoFailure>) {
    if let Err(failure) = reset {
        log::error!("{device}: dropped without a confirmed reset: {failure}");
    }
}
