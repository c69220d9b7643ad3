"""The QEMU setup of `make bench`, shared by dmakit's benchmark (tests/bench) and
the Linux guest (tests/bench_linux.py), so that both boot in the same machine
with the same disks: only the kernel, its command line and the initramfs differ.

    -accel tcg -machine pc -m 6G, 256 MiB images of random bytes, cache=unsafe:
      virtio  legacy virtio-blk-pci
      ata     IDE (PIIX3; on q35 a piix3-ide controller added for it)
      ahci    an ide-hd on AHCI (on pc an ich9-ahci added for it; q35's own)
      vdb     q35 only: a modern virtio-blk behind the Intel IOMMU
      nvme    an NVMe controller (QEMU's -device nvme, serial dmakit-nvme),
              namespace 1 (nvme0n1 in both guests); on q35 behind the IOMMU
    MACHINE=q35 adds -device intel-iommu.
With `network` (net_forwards' arguments), a virtio-net-pci (transitional, like
virtio-blk) on QEMU's user network (restrict=off, see net_forwards): the guest is 10.0.2.15,
answers only what comes in, and the host reaches it only through the forwards,
bound to 127.0.0.1: ECHO_PORT (udp and tcp) -> guest port 7, STATS_PORT (tcp)
-> 11. The network phase of tests/bench (tests/bench_net.py) uses it.
The AHCI drive's id is sata0, not sd0: QEMU 7.2 has a drive "sd0" of its own
(the default SD card slot) and aborts with "Device with id 'sd0' already exists".
"""
import hashlib
import os

SIZE = 256 << 20
HEAD = 16 << 20  # the Linux guest hashes this much of each disk
MACHINE = os.environ.get("MACHINE", "pc")
if MACHINE not in ("pc", "q35"):
    raise SystemExit(f"MACHINE must be pc or q35, not {MACHINE!r}")
DISKS = ("virtio", "ata", "ahci", "vdb", "nvme") if MACHINE == "q35" else ("virtio", "ata", "ahci", "nvme")

# The queue-depth figures both kernels print for every disk, as DISK_NAME.
DEPTH_FIGURES = [
    ("seq128k_qd1", "MB/s"),
    ("seq128k_qd32", "MB/s"),
    ("rand4k_qd1", "IOPS"),
    ("rand4k_qd32", "IOPS"),
    ("seq4k_qd1", "MB/s"),
    ("seq1m_qd1", "MB/s"),
]


class Image:
    """A disk image of random bytes and its sha256 (whole, and its first HEAD bytes)."""

    def __init__(self, path):
        self.path = path
        whole, head = hashlib.sha256(), hashlib.sha256()
        with open(path, "wb") as image:
            for offset in range(0, SIZE, 1 << 20):
                block = os.urandom(1 << 20)
                whole.update(block)
                if offset < HEAD:
                    head.update(block)
                image.write(block)
        self.sha256, self.head_sha256 = whole.hexdigest(), head.hexdigest()


def make_images(directory):
    """One image per disk of this machine, in `directory`: {disk: Image}."""
    return {disk: Image(os.path.join(directory, f"{disk}.img")) for disk in DISKS}


def net_forwards(echo_port, stats_port):
    """QEMU arguments for the guest's NIC, reached from the host through 127.0.0.1 only."""
    forwards = [f"hostfwd=udp:127.0.0.1:{echo_port}-:7", f"hostfwd=tcp:127.0.0.1:{echo_port}-:7",
                f"hostfwd=tcp:127.0.0.1:{stats_port}-:11"]
    # restrict=off: a restricted slirp drops every UDP datagram the guest
    # sends, the echo's answers through the forward included (libslirp's
    # udp_input); the guests only answer what came through these forwards.
    return ["-netdev", ",".join(["user", "id=net0", "restrict=off", *forwards]),
            "-device", "virtio-net-pci,netdev=net0"]


def qemu_command(images, kernel, append, initrd=None, network=()):
    """The QEMU command line that boots `kernel` with the disks of `images` (and `network`'s NIC)."""
    def drive(disk, drive_id):
        return ["-drive", f"file={images[disk].path},if=none,id={drive_id},format=raw,cache=unsafe"]

    machine = ["-machine", "pc"]
    ata = ["-drive", f"file={images['ata'].path},if=ide,format=raw,cache=unsafe"]
    ahci = ["-device", "ich9-ahci,id=ahci0", *drive("ahci", "sata0"), "-device", "ide-hd,drive=sata0,bus=ahci0.0"]
    modern = []
    # The drive id and serial of make run's NVMe disk (boot/qemu-run).
    nvme = [*drive("nvme", "nvm0"), "-device", "nvme,serial=dmakit-nvme,drive=nvm0"]
    if MACHINE == "q35":
        machine = ["-machine", "q35", "-device", "intel-iommu", "-device", "piix3-ide,id=ide9"]
        ata = [*drive("ata", "d1"), "-device", "ide-hd,drive=d1,bus=ide9.0"]
        ahci = [*drive("ahci", "sata0"), "-device", "ide-hd,drive=sata0,bus=ide.0"]
        modern = [*drive("vdb", "v1"), "-device", "virtio-blk-pci,drive=v1,disable-legacy=on,iommu_platform=on"]
    return [
        "qemu-system-x86_64", "-accel", "tcg", *machine, "-m", "6G", "-no-reboot",
        "-display", "none", "-serial", "stdio", "-monitor", "none",
        "-kernel", kernel, *(["-initrd", initrd] if initrd else []), "-append", append,
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        *drive("virtio", "v0"), "-device", "virtio-blk-pci,drive=v0",
        *ata, *modern, *ahci, *nvme, *network,
    ]
