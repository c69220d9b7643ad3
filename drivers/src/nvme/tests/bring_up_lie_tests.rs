//! Bring-up against a hostile controller, under a property test of its own
//! (cheaper than the I/O cases, so as many): CAP (MQES, DSTRD) at every
//! edge, CSTS.RDY that never comes or never goes, CSTS.CFS as it gets ready,
//! admin commands that fail or never complete, and Identify Controller and
//! Namespace with any MDTS, SQES, CQES, NN, SGLS, NSZE, NCAP, LBA data size
//! and metadata. Every case must end in a disk whose limits make sense (and
//! which reads) or a typed refusal; and, unless the controller never stopped,
//! with every frame back, each disable done while the controller's memory was
//! still allocated, and nothing new in the misuse log.

use core::sync::atomic::Ordering;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::super::fake::{AdminStep, Failing};
use super::super::identify::{ControllerIdentity, NamespaceIdentity};
use super::hostile_tests::{Before, CASE_BLOCKS, Ending, case_image, check_case_end, machine, run_hostile, typed};
use super::*;

/// How CSTS answers CC.EN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// RDY follows EN at once.
    Follows,
    /// RDY never becomes 1.
    NeverReady,
    /// CFS comes with RDY.
    DiesAtEnable,
    /// RDY never goes back to 0: what it holds is abandoned (leaked).
    NeverStops,
}

#[derive(Clone, Debug)]
struct BringUpCase {
    max_entries: u16,
    stride: u8,
    readiness: Readiness,
    failing: Option<(AdminStep, Failing)>,
    controller: ControllerIdentity,
    namespace: Option<NamespaceIdentity>,
}

fn edge_or_any<T: Copy + core::fmt::Debug + 'static>(
    usual: T,
    edges: &[T],
    any: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    let edges = proptest::sample::select(edges.to_vec());
    prop_oneof![8 => Just(usual), 1 => edges, 1 => any].boxed()
}

fn any_controller() -> impl Strategy<Value = ControllerIdentity> {
    let mdts = edge_or_any(0u8, &[1, 5, 51, 52, 63, 64], any::<u8>());
    let sqes = edge_or_any(0x66u8, &[0, 0x06, 0x56, 0x67, 0x76], any::<u8>());
    let cqes = edge_or_any(0x44u8, &[0, 0x04, 0x34, 0x45], any::<u8>());
    let namespaces = edge_or_any(1u32, &[0, u32::MAX], any::<u32>());
    (mdts, sqes, cqes, namespaces, any::<u32>(), any::<u8>()).prop_map(
        |(max_transfer_shift, submission_entry_sizes, completion_entry_sizes, namespaces, sgl_support, cache)| {
            ControllerIdentity {
                serial: "hostile".into(),
                model: "HOSTILE NVME".into(),
                max_transfer_shift,
                submission_entry_sizes,
                completion_entry_sizes,
                namespaces,
                volatile_write_cache: cache,
                sgl_support,
            }
        },
    )
}

fn any_namespace() -> impl Strategy<Value = Option<NamespaceIdentity>> {
    let blocks = edge_or_any(CASE_BLOCKS, &[0, 1, u64::MAX >> 9, u64::MAX >> 8, u64::MAX], any::<u64>());
    let capacity = edge_or_any(0u64, &[1, CASE_BLOCKS + 1, u64::MAX], any::<u64>());
    let shift = edge_or_any(9u8, &[0, 8, 10, 12, 13, 63, 64, 255], any::<u8>());
    let metadata = edge_or_any(0u16, &[8, u16::MAX], any::<u16>());
    let namespace = (blocks, capacity, shift, metadata).prop_map(|(blocks, capacity, block_shift, metadata)| {
        // Capacity 0 stands for "as large as the size", the usual answer.
        let capacity = if capacity == 0 { blocks } else { capacity };
        NamespaceIdentity { blocks, capacity, block_shift, metadata }
    });
    prop_oneof![1 => Just(None), 3 => namespace.prop_map(Some)]
}

fn any_bring_up_case() -> impl Strategy<Value = BringUpCase> {
    let max_entries = edge_or_any(65u16, &[1, 2, 3, 64, u16::MAX], 1u16..);
    let stride = edge_or_any(0u8, &[1, 2, 10, 11, 15], 0u8..16);
    let readiness = prop_oneof![
        40 => Just(Readiness::Follows),
        4 => Just(Readiness::NeverReady),
        4 => Just(Readiness::DiesAtEnable),
        // Rare: every such case leaks the memory the controller holds.
        1 => Just(Readiness::NeverStops),
    ];
    let step = prop_oneof![
        Just(AdminStep::IdentifyController),
        Just(AdminStep::IdentifyNamespace),
        Just(AdminStep::CreateCompletionQueue),
        Just(AdminStep::CreateSubmissionQueue),
    ];
    let failing =
        proptest::option::weighted(0.2, (step, prop_oneof![Just(Failing::Status), Just(Failing::NoCompletion)]));
    (max_entries, stride, readiness, failing, any_controller(), any_namespace()).prop_map(
        |(max_entries, stride, readiness, failing, controller, namespace)| BringUpCase {
            max_entries,
            stride,
            readiness,
            failing,
            controller,
            namespace,
        },
    )
}

fn run_bring_up_case(case: &BringUpCase) -> Result<(), TestCaseError> {
    let platform = machine();
    let before = Before::now(platform);
    let fake = FakeNvme::with_stride(platform, case_image(), case.max_entries, false, case.stride);
    *fake.controller.lock() = case.controller.clone();
    *fake.namespace.lock() = case.namespace;
    *fake.fail_admin.lock() = case.failing;
    match case.readiness {
        Readiness::Follows => {}
        Readiness::NeverReady => fake.never_ready.store(true, Ordering::Relaxed),
        Readiness::DiesAtEnable => fake.die_at_enable(),
        Readiness::NeverStops => fake.stuck.store(true, Ordering::Relaxed),
    }
    let registers = Arc::new(FakeRegisters(fake.clone()));
    let brought_up = Controller::new(registers, FAKE_REGISTER_BYTES, &WAITER)
        .and_then(|controller| NvmeDisk::new(controller, platform, NvmeOptions::DEFAULT));
    match brought_up {
        Err(failure) => prop_assert!(typed(&failure.cause()), "untyped refusal: {failure}"),
        Ok(disk) => {
            let link = disk.link().clone();
            let block = u64::from(link.block_size);
            prop_assert!((512..=4096).contains(&block) && block.is_power_of_two(), "{link:?}");
            prop_assert!(link.blocks >= 1 && link.blocks.checked_mul(block).is_some(), "{link:?}");
            prop_assert!(link.max_request_bytes >= block && link.max_request_bytes % block == 0, "{link:?}");
            prop_assert!(link.depth >= 1 && link.depth < usize::from(link.entries), "{link:?}");
            let disk = QueuedDisk::new(disk, &WAITER).unwrap();
            let mut target = DmaBuffer::allocate(platform, block, IoDirection::InOut, Constraints::NONE).unwrap();
            if let Err(failure) = disk.read(0, 1, &mut target, 0) {
                prop_assert!(typed(&failure.cause()), "untyped read failure: {failure}");
            }
        }
    }
    let ending = match case.readiness {
        Readiness::NeverStops => Ending::NeverStopped,
        _ => Ending::Stopped,
    };
    check_case_end(platform, &fake, before, ending)
}

#[test]
fn a_hostile_controller_at_bring_up_is_refused_by_name_or_gives_a_sane_disk() {
    run_hostile(any_bring_up_case(), run_bring_up_case);
}
