//! Test kernel: the transitional virtio-net device through its legacy
//! registers, on QEMU's restricted user-mode network.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "network_checks.rs"]
mod checks;

use checks::*;

dmakit::network!(legacy);

dmakit::test_kernel!(
    the_interface_starts_with_its_mac_and_every_buffer_prepared_once,
    arp_round_trips_recycle_the_buffers_without_a_fresh_prepare,
);
