//! The registry: a tree of what the kernel found and what drives it, printed in
//! the style of macOS's `ioreg`.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::block::BlockDevice;

/// One entry of the registry tree.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// The entry's name.
    pub name: String,
    /// Its class, as ioreg prints it.
    pub class: String,
    /// Key/value facts.
    pub properties: Vec<(String, String)>,
    /// Entries below it.
    pub children: Vec<Node>,
}

impl Node {
    /// A node with no properties or children.
    pub fn new(name: impl Into<String>, class: impl Into<String>) -> Node {
        Node { name: name.into(), class: class.into(), properties: Vec::new(), children: Vec::new() }
    }

    fn lines(&self, prefix: &str, last: bool, output: &mut Vec<String>) {
        let properties: Vec<String> = self.properties.iter().map(|(key, value)| format!("{key}={value}")).collect();
        let details = if properties.is_empty() { String::new() } else { format!(", {}", properties.join(", ")) };
        output.push(format!("{prefix}+-o {}  <class {}{}>", self.name, self.class, details));
        let child_prefix = format!("{prefix}{}", if last { "  " } else { "| " });
        for (index, child) in self.children.iter().enumerate() {
            child.lines(&child_prefix, index + 1 == self.children.len(), output);
        }
    }
}

pub(super) static REGISTRY: Mutex<Option<Node>> = Mutex::new(None);
pub(super) static BLOCK_DEVICES: Mutex<Vec<(String, Arc<dyn BlockDevice>)>> = Mutex::new(Vec::new());

/// The registry tree as text lines.
pub fn registry_lines() -> Vec<String> {
    let mut output = Vec::new();
    if let Some(root) = REGISTRY.lock().as_ref() {
        root.lines("", true, &mut output);
    }
    output
}

/// Prints the registry tree to the console.
#[cfg(target_os = "none")]
pub fn print_registry() {
    for line in registry_lines() {
        crate::println!("{line}");
    }
}

/// Prints the registry tree (host builds have no console: a no-op).
#[cfg(not(target_os = "none"))]
pub fn print_registry() {}

/// Every published disk with its name (vda, hda, ...), in attach order.
pub fn block_devices() -> Vec<(String, Arc<dyn BlockDevice>)> {
    BLOCK_DEVICES.lock().clone()
}

/// The disk called `name`.
pub fn find_block_device(name: &str) -> Option<Arc<dyn BlockDevice>> {
    BLOCK_DEVICES.lock().iter().find(|(disk, _)| disk == name).map(|(_, device)| device.clone())
}
