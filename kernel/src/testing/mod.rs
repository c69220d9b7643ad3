//! The in-kernel test harness: a custom test framework on stable Rust.
//!
//! A test kernel (a file in `tests/`) lists its tests with [`crate::test_kernel!`].
//! The harness runs them in order and prints one line per test
//! (`test NAME ... ok` or `FAILED` with the panic message and location), then
//! `N passed, N failed`, and leaves QEMU through `isa-debug-exit` with a success or
//! failure status. `test.filter=TEXT` on the kernel command line (what
//! `make test-qemu TEST=KERNEL:TEXT` passes) runs only the tests whose name
//! contains `TEXT`.
//!
//! A panic does not end the run: the panic handler records the result and resumes
//! with the next test on a fresh kernel stack, abandoning the panicked test's
//! stack (nothing is unwound: the kernel is built with `panic = "abort"`). That is
//! also how `should_panic` tests pass. A panicking test that held a lock leaves it
//! held; the runner's timeout catches the resulting hang.

pub mod random;

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spin::Once;

use crate::arch::qemu::{ExitCode, exit};
use crate::serial::emergency_print;

/// One registered test.
#[derive(Clone, Copy, Debug)]
pub struct Test {
    /// The name printed in the report.
    pub name: &'static str,
    /// The test itself; it fails by panicking.
    pub function: fn(),
    /// Whether the test passes only if it panics.
    pub should_panic: bool,
    /// With `should_panic`: text the panic message must contain (`""`: any panic).
    pub expected: &'static str,
}

/// Keeps the first bytes of a formatted message, to look for a substring in it
/// without the heap (which the panicking code may have left locked).
struct MessagePrefix {
    bytes: [u8; 256],
    length: usize,
}

impl core::fmt::Write for MessagePrefix {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.length;
        let taken = text.len().min(room);
        self.bytes[self.length..self.length + taken].copy_from_slice(&text.as_bytes()[..taken]);
        self.length += taken;
        Ok(())
    }
}

/// Whether the panic message contains `expected`.
fn message_contains(info: &PanicInfo, expected: &str) -> bool {
    use core::fmt::Write;
    let mut prefix = MessagePrefix { bytes: [0; 256], length: 0 };
    let _ = write!(prefix, "{}", info.message());
    prefix.bytes[..prefix.length].windows(expected.len().max(1)).any(|w| w == expected.as_bytes())
        || expected.is_empty()
}

static TESTS: Once<&'static [Test]> = Once::new();
static RUNNING: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

/// Whether a test is running now (the panic handler asks).
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// The text a test's name must contain to run, from `test.filter=TEXT` on the
/// kernel command line; `None` runs every test.
fn filter() -> Option<&'static str> {
    crate::command_line::option(crate::boot::command_line(), "test.filter")
}

/// Whether `test` runs under the command line's filter.
fn is_selected(test: &Test) -> bool {
    filter().is_none_or(|text| test.name.contains(text))
}

/// Runs every test (or those the filter selects), prints the report and exits
/// QEMU.
pub fn run(tests: &'static [Test]) -> ! {
    TESTS.call_once(|| tests);
    match filter() {
        None => crate::println!("running {} tests", tests.len()),
        Some(text) => {
            let selected = tests.iter().filter(|test| is_selected(test)).count();
            crate::println!("running {selected} of {} tests (test.filter={text})", tests.len());
            if selected == 0 {
                // A mistyped filter must not pass as a run that found nothing wrong.
                crate::println!("no test of this kernel has {text:?} in its name");
                crate::println!("0 passed, 0 failed");
                exit(ExitCode::Failure)
            }
        }
    }
    run_from(0)
}

fn run_from(first: usize) -> ! {
    let tests = TESTS.get().copied().unwrap_or(&[]);
    for (index, test) in tests.iter().enumerate().skip(first) {
        if !is_selected(test) {
            continue;
        }
        CURRENT.store(index, Ordering::Release);
        crate::print!("test {} ... ", test.name);
        RUNNING.store(true, Ordering::Release);
        (test.function)();
        RUNNING.store(false, Ordering::Release);
        if test.should_panic {
            crate::println!("FAILED\n    the test should have panicked but returned");
            FAILED.fetch_add(1, Ordering::Relaxed);
        } else {
            crate::println!("ok");
            PASSED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let passed = PASSED.load(Ordering::Relaxed);
    let failed = FAILED.load(Ordering::Relaxed);
    crate::println!("{passed} passed, {failed} failed");
    exit(if failed == 0 { ExitCode::Success } else { ExitCode::Failure })
}

/// Called by the panic handler while a test runs: records the outcome and
/// continues with the next test.
pub fn on_panic(info: &PanicInfo) -> ! {
    RUNNING.store(false, Ordering::Release);
    let index = CURRENT.load(Ordering::Acquire);
    let test = TESTS.get().and_then(|tests| tests.get(index));
    let should_panic = test.is_some_and(|t| t.should_panic);
    let expected = test.map_or("", |t| t.expected);
    if should_panic && message_contains(info, expected) {
        emergency_print(format_args!("ok (panicked as expected: {})\n", info.message()));
        PASSED.fetch_add(1, Ordering::Relaxed);
    } else if should_panic {
        emergency_print(format_args!("FAILED\n    panicked, but the message lacks {expected:?}: {info}\n"));
        FAILED.fetch_add(1, Ordering::Relaxed);
    } else {
        emergency_print(format_args!("FAILED\n    {info}\n"));
        FAILED.fetch_add(1, Ordering::Relaxed);
    }
    resume_with(index + 1)
}

/// Restarts the test loop at `next` on top of the kernel stack.
fn resume_with(next: usize) -> ! {
    let Some(info) = crate::boot_info::get() else { exit(ExitCode::Failure) };
    let top = info.kernel_stack_bottom + info.kernel_stack_len;
    // SAFETY: the kernel stack is mapped for the kernel's whole life. Everything on
    // it belongs to the test that panicked (or to the harness frames above it,
    // which are re-created by `resume`), and nothing will ever return into those
    // frames, so starting again from its top discards only dead data.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {resume}",
            "ud2",
            top = in(reg) top,
            resume = sym resume,
            in("rdi") next,
            options(noreturn),
        )
    }
}

extern "C" fn resume(next: usize) -> ! {
    // A panic inside an interrupt or exception handler left interrupts off.
    x86_64::instructions::interrupts::enable();
    run_from(next)
}

/// Declares a test kernel: its entry point, kernel initialisation, and its tests in
/// order. Mark a test that must panic with `#[should_panic]`, or with
/// `#[should_panic(expected = "text")]` when the message must contain `text`.
///
/// ```ignore
/// dmakit::test_kernel!(
///     heap_holds_a_large_vector,
///     #[should_panic(expected = "page fault")] page_fault_is_reported,
/// );
/// ```
#[macro_export]
macro_rules! test_kernel {
    ($($(#[$attribute:ident $(( expected = $expected:literal ))?])? $test:ident),* $(,)?) => {
        $crate::bootloader_api::entry_point!(__dmakit_test_main, config = &$crate::BOOTLOADER_CONFIG);

        fn __dmakit_test_main(boot_info: &'static mut $crate::bootloader_api::BootInfo) -> ! {
            static TESTS: &[$crate::testing::Test] = &[$(
                $crate::testing::Test {
                    name: stringify!($test),
                    function: $test,
                    should_panic: $crate::__should_panic!($($attribute)?),
                    expected: $crate::__expected!($($($expected)?)?),
                }
            ),*];
            if let Err(error) = $crate::init(boot_info) {
                panic!("kernel initialisation failed: {error}");
            }
            $crate::testing::run(TESTS)
        }
    };
}

/// The expected panic text of a test, or `""`.
#[doc(hidden)]
#[macro_export]
macro_rules! __expected {
    () => {
        ""
    };
    ($expected:literal) => {
        $expected
    };
}

/// Whether the optional attribute of a test is `should_panic`.
#[doc(hidden)]
#[macro_export]
macro_rules! __should_panic {
    () => {
        false
    };
    (should_panic) => {
        true
    };
}

/// Asks the test runner (`boot/qemu-run`) for a machine other than the default:
/// `dmakit::machine!(q35);` in a test kernel leaves the string
/// `dmakit-machine=q35` in its image, and the runner boots that kernel on q35
/// (with the Intel IOMMU and the modern virtio disk) whatever `MACHINE` says.
#[macro_export]
macro_rules! machine {
    (q35) => {
        #[used]
        static __DMAKIT_MACHINE: [u8; 18] = *b"dmakit-machine=q35";
    };
}

/// Asks the test runner for a virtio-net device on QEMU's user-mode network,
/// restricted (`restrict=on`): the guest reaches QEMU's own virtual gateway
/// (10.0.2.2, which answers ARP) and nothing beyond, on this machine or off it.
/// `dmakit::network!(modern)` asks for the modern-only device, `(legacy)` for
/// the transitional one driven through its legacy registers.
#[macro_export]
macro_rules! network {
    (legacy) => {
        #[used]
        static __DMAKIT_NETWORK: [u8; 21] = *b"dmakit-network=legacy";
    };
    (modern) => {
        #[used]
        static __DMAKIT_NETWORK: [u8; 21] = *b"dmakit-network=modern";
    };
}

/// Asks the test runner to make every disk of this test kernel fail reads and
/// writes that touch one sector with EIO (QEMU's `blkdebug` driver between the
/// device and its image): `dmakit::disk_error_at!(30000);` leaves the string
/// `dmakit-blkdebug-eio=30000` in the image, and the runner attaches each disk
/// through a blkdebug rule for that sector.
#[macro_export]
macro_rules! disk_error_at {
    ($sector:literal) => {
        #[used]
        static __DMAKIT_DISK_ERROR: &str = concat!("dmakit-blkdebug-eio=", stringify!($sector));
    };
}
