//! Register-level fakes of virtio devices for host tests: the legacy register
//! block (one `RegisterIo`) and the modern structures (common, notify, ISR,
//! device configuration: one `RegisterIo` window each), over a device core
//! that keeps every queue the device offers, with a personality per device
//! type: virtio-blk (`disk.rs`) on queue 0, virtio-net (`nic.rs`) on queues 0
//! and 1. The device reaches the driver's memory only through the addresses
//! it was given, in simulated physical memory, and checks every write.

mod device;
mod disk;
mod legacy_registers;
mod lies;
mod modern_registers;
mod nic;
mod rings;

pub use device::{ConfigGeneration, FakeDevice, FeatureCheck, Personality, QueueOffer, Reset, ResetResponse};
pub use disk::{Answer, FakeVirtio, FinishOrder, HeldWork, Medium, Misreport, RunChain, StatusByte};
pub use nic::{FakeVirtioNet, Lie, Received, receive, transmit};
pub use rings::{DeviceMemory, QueueAccess, QueueState, Ring};
