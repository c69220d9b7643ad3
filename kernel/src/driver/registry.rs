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

/// The disks the drivers of PCI function `location` (`BB:DD.F`) published,
/// by name; empty for a function without a driver or without a disk (a host
/// bridge, a NIC).
pub fn disks_of_function(location: &str) -> Vec<String> {
    REGISTRY.lock().as_ref().map(|root| disks_under(root, location)).unwrap_or_default()
}

/// [`disks_of_function`] in the tree `root`: the function's node is named
/// `BB:DD.F vendor:device`, its drivers are below it and their disks below them.
fn disks_under(root: &Node, location: &str) -> Vec<String> {
    let functions = root.children.iter().flat_map(|bus| &bus.children);
    functions
        .filter(|function| function.name.split(' ').next() == Some(location))
        .flat_map(|function| &function.children)
        .flat_map(|driver| &driver.children)
        .filter(|child| child.class == "BlockDevice")
        .map(|disk| disk.name.clone())
        .collect()
}

/// Every published disk with its name (vda, hda, ...), in attach order.
pub fn block_devices() -> Vec<(String, Arc<dyn BlockDevice>)> {
    BLOCK_DEVICES.lock().clone()
}

/// The disk called `name`.
pub fn find_block_device(name: &str) -> Option<Arc<dyn BlockDevice>> {
    BLOCK_DEVICES.lock().iter().find(|(disk, _)| disk == name).map(|(_, device)| device.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree as `attach` builds it on q35: a host bridge, an IDE controller
    /// with its disk, a NIC.
    fn q35() -> Node {
        let function = |name: &str, driver: Option<(&str, &[&str])>| {
            let mut node = Node::new(name, "PciDevice");
            if let Some((driver, disks)) = driver {
                let mut driver = Node::new(driver, "Driver");
                driver.children.extend(disks.iter().map(|disk| Node::new(*disk, "BlockDevice")));
                node.children.push(driver);
            }
            node
        };
        let mut bus = Node::new("pci0", "PciBus");
        bus.children.push(function("00:00.0 8086:29c0", None));
        bus.children.push(function("00:03.0 8086:7010", Some(("PiixIde", &["hda", "hdb"]))));
        bus.children.push(function("00:04.0 1af4:1000", Some(("VirtioNet", &[]))));
        let mut root = Node::new("dmakit", "Root");
        root.children.push(bus);
        root
    }

    #[test]
    fn a_function_names_its_disks_and_one_without_a_disk_none() {
        let root = q35();
        assert_eq!(disks_under(&root, "00:03.0"), ["hda", "hdb"]);
        assert!(disks_under(&root, "00:00.0").is_empty(), "the host bridge has no driver");
        assert!(disks_under(&root, "00:04.0").is_empty(), "a NIC's driver publishes no disk");
        assert!(disks_under(&root, "00:03").is_empty(), "a location is matched whole");
        assert!(disks_under(&root, "00:09.0").is_empty());
    }
}
