//! The test generator every virtio host test file uses: each test runs once
//! per transport.

/// Generates a `#[test]` for each transport from each `fn name(interface)`.
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        mod legacy {
            $(#[test] fn $name() { super::$name(super::Interface::Legacy) })*
        }
        mod modern {
            $(#[test] fn $name() { super::$name(super::Interface::Modern) })*
        }
    };
}
