//! Physical memory, paging and the kernel heap.

pub mod bit_tree;
pub mod copy;
mod error;
pub mod frame_allocator;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
pub mod physical;
#[cfg(target_os = "none")]
pub mod reserved;

pub use error::MemoryError;
pub use frame_allocator::{Constraints, FRAME_SIZE, FrameAllocator, ZoneKind, ZoneStats};
