//! Test kernel: the NVMe controller on q35, where its DMA goes through VT-d.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "nvme_checks.rs"]
mod checks;

use checks::*;

dmakit::machine!(q35);

dmakit::test_kernel!(
    thirty_two_requests_of_random_sizes_in_flight_and_every_byte_is_right,
    a_buffer_that_breaks_the_prp_rule_is_bounced_by_the_dma_layer_and_read_right,
    a_stop_shuts_the_controller_down_and_a_start_brings_it_back,
);
