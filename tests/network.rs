//! Test kernel: the modern-only virtio-net device (virtio 1.0 structures),
//! on QEMU's restricted user-mode network.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "network_checks.rs"]
mod checks;

use checks::*;

dmakit::network!(modern);

dmakit::test_kernel!(
    the_interface_starts_with_its_mac_and_every_buffer_prepared_once,
    arp_round_trips_recycle_the_buffers_without_a_fresh_prepare,
);
