#!/usr/bin/env python3
"""`make bench-linux`: Linux in `make bench`'s QEMU setup, measured with fio.

Boots the guest tests/linux/build-guest made (Debian's generic kernel, a busybox
initramfs with fio, /init = tests/linux/init) with tests/bench_setup.py's QEMU
command line, the one dmakit's benchmark boots in: the same machine, memory,
disks and drive options. In the guest fio reads each disk with O_DIRECT (libaio
if it works, else psync), one time-based job after the other, FIO_RUNTIME
seconds each (default 3), the jobs named like dmakit's queue-depth figures.
The guest also hashes the first 16 MiB of each disk, checked here against the
image, counting swiotlb's bounces meanwhile (printed per boot: 0 expected).
The guest kernel gets `mem=4G` (LINUX_MEMORY): the machine has 6 GiB so that
dmakit can put a buffer above 4 GiB, but a Linux with memory there hands the
32-bit PIIX IDE controller fio's buffers from above 4 GiB and bounces every
request through swiotlb (two copies), which is neither what dmakit's
queue-depth figures measure (buffers below 4 GiB) nor Linux's ordinary
configuration of a PIIX machine (the independent Linux peer had 1 GiB). Prints `BENCH linux_DISK_JOB=value unit` lines (medians over the boots)
and a Markdown table. tests/bench imports boot() for `make bench LINUX=1`.
After each boot, a network phase (tests/bench_net.py; NET= leaves it out):
the guest booted again with linuxbench.net=1 and a virtio-net forwarded from
127.0.0.1, measured with UDP and TCP echo (`BENCH linux_net_*` lines).

    tests/bench_linux.py [RUNS]      (default 1 boot; the guest under build/linux)
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in tests/
from bench_setup import DEPTH_FIGURES, DISKS, MACHINE, make_images, net_forwards, qemu_command  # noqa: E402
import bench_net  # noqa: E402

GUEST = Path(__file__).resolve().parents[1] / "build/linux"
RUNTIME = int(os.environ.get("FIO_RUNTIME", "3"))
# Linux uses no memory above 4 GiB (the module docstring says why); the QEMU
# command line stays the one dmakit boots in.
LINUX_MEMORY = "mem=4G"
BASE_APPEND = ["console=ttyS0", "quiet", "panic=-1", LINUX_MEMORY]
# fio's job for each queue-depth figure: NAME:RW:BS:IODEPTH.
JOBS = {
    "seq128k_qd1": "read:128k:1",
    "seq128k_qd32": "read:128k:32",
    "rand4k_qd1": "randread:4k:1",
    "rand4k_qd32": "randread:4k:32",
    "seq4k_qd1": "read:4k:1",
    "seq1m_qd1": "read:1m:1",
}
assert list(JOBS) == [name for name, _ in DEPTH_FIGURES]
UNITS = dict(DEPTH_FIGURES)


def net_command(images, echo_port, stats_port):
    """The QEMU command line of the guest in network echo mode (linuxbench.net=1), for tests/bench_net.py."""
    append = " ".join([*BASE_APPEND, "linuxbench.net=1"])
    return qemu_command(images, str(GUEST / "vmlinuz"), append, str(GUEST / "initramfs.cpio"),
                        network=net_forwards(echo_port, stats_port))


def boot(images, runtime=RUNTIME, log=None):
    """Boots the Linux guest once: ({"linux_DISK_JOB": value}, [problems], about), about =
    {"engine": fio's, DISK: IOMMU domain, "bounced": {DISK: swiotlb bounces while hashing}}."""
    append = " ".join([
        *BASE_APPEND,
        f"linuxbench.disks={','.join(DISKS)}",
        f"linuxbench.jobs={','.join(f'{name}:{job}' for name, job in JOBS.items())}",
        f"linuxbench.runtime={runtime}",
    ])
    command = qemu_command(images, str(GUEST / "vmlinuz"), append, str(GUEST / "initramfs.cpio"))
    qemu = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    # Boot, disks, and per disk fio's start-up plus its jobs: far less than this.
    timer = threading.Timer(120 + len(DISKS) * len(JOBS) * (runtime + 10), qemu.kill)
    timer.start()
    figures, problems, about, ended = {}, [], {"engine": "?", "bounced": {}}, False
    for raw in qemu.stdout:
        line = raw.decode(errors="replace").rstrip("\r\n")
        if log:
            log.write(line + "\n")
        words = line.split()
        if line.startswith("LINUX_SHA256 ") and len(words) == 3:
            if words[2] != images[words[1]].head_sha256:
                problems.append(f"{words[1]}: the first 16 MiB differ from the image")
        elif line.startswith("LINUX_ENGINE ") and len(words) == 2:
            about["engine"] = words[1]
        elif line.startswith("LINUX_BOUNCED ") and len(words) == 3:
            about["bounced"][words[1]] = words[2]
        elif line.startswith("LINUX_DISK ") and len(words) >= 4:
            about[words[1]] = words[3].removeprefix("iommu=")
        elif line.startswith("LINUX_FIO ") and len(words) == 3:
            # terse v3: 3 job name, 5 error, 6 KiB read, 8 IOPS, 9 runtime in ms
            fields = words[2].split(";")
            disk, name = words[1], fields[2]
            if fields[4] != "0" or int(fields[8]) == 0:
                problems.append(f"{disk} {name}: fio error {fields[4]}")
            elif UNITS.get(name) == "IOPS":
                figures[f"linux_{disk}_{name}"] = float(fields[7])
            elif name in UNITS:
                figures[f"linux_{disk}_{name}"] = int(fields[5]) * 1.024 / int(fields[8])  # MB/s
        elif line.startswith("LINUX_INFO"):
            problems.append(line.removeprefix("LINUX_INFO "))
        ended = ended or line == "LINUX_END"
    qemu.wait()
    timer.cancel()
    if not ended:
        problems.append(f"the guest did not finish (QEMU exited with {qemu.returncode})")
    missing = [f"linux_{disk}_{name}" for disk in DISKS for name in JOBS if f"linux_{disk}_{name}" not in figures]
    if missing:
        problems.append(f"missing figures: {', '.join(missing)}")
    return figures, problems, about


def number(value, unit):
    return f"{value:.0f}" if unit == "IOPS" else f"{value:.1f}"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if not (GUEST / "initramfs.cpio").exists():
        print(f"no Linux guest in {GUEST}: make bench-linux builds it (tests/linux/build-guest)", file=sys.stderr)
        return 2
    results, failures, engines, domains = {}, 0, set(), {}
    with tempfile.TemporaryDirectory() as scratch:
        images = make_images(scratch)
        for run in range(1, runs + 1):
            start = time.monotonic()
            with open(GUEST / f"boot-{run}.log", "w") as log:
                figures, problems, about = boot(images, log=log)
            engines.add(about["engine"])
            for disk in DISKS:
                domains.setdefault(disk, set()).add(about.get(disk, "?"))
            bounced = ", ".join(f"{disk} {count}" for disk, count in about["bounced"].items()) or "?"
            print(f"run {run}: {time.monotonic() - start:.0f} s, fio engine {about['engine']}, "
                  f"swiotlb bounces while hashing: {bounced}, guest log {GUEST / f'boot-{run}.log'}", file=sys.stderr)
            for problem in problems:
                # A module that does not load is left out (crct10dif_pclmul: no PCLMUL in TCG's CPU).
                print(f"run {run}: {'note: ' if problem.startswith('insmod') else ''}{problem}", file=sys.stderr)
            failures += any(not problem.startswith("insmod") for problem in problems)
            for name, value in figures.items():
                results.setdefault(name, []).append(value)
            if bench_net.NET:
                figures, problems, _ = bench_net.run_phase(
                    lambda echo_port, stats_port: net_command(images, echo_port, stats_port),
                    GUEST / f"net-{run}.log", f"run {run}: net")
                for problem in problems:
                    print(problem, file=sys.stderr)
                failures += len(problems)
                for name, value in figures.items():
                    results.setdefault(f"linux_{name}", []).append(value)
    qemu_version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    kernel = next(GUEST.glob("root/boot/vmlinuz-*")).name.removeprefix("vmlinuz-")
    print()
    print(f"{time.strftime('%Y-%m-%d')}, {qemu_version}, TCG, machine {MACHINE}, Linux {kernel} ({LINUX_MEMORY}), "
          f"fio {'/'.join(sorted(engines))} O_DIRECT, {RUNTIME} s per job, {runs} boots, medians")
    if MACHINE == "q35":  # DMA = strict, DMA-FQ = lazy invalidation, identity = pass-through
        print("Linux's IOMMU domain per disk: "
              + ", ".join(f"{disk} {'/'.join(sorted(types))}" for disk, types in domains.items()))
    print("| figure | Linux (median) | all runs |")
    print("|---|---|---|")
    for disk in DISKS:
        for name, unit in DEPTH_FIGURES:
            if values := results.get(f"linux_{disk}_{name}"):
                every = ", ".join(number(value, unit) for value in values)
                print(f"| linux_{disk}_{name} | {number(statistics.median(values), unit)} {unit} | {every} |")
    for name, unit in bench_net.FIGURES:
        if values := results.get(f"linux_{name}"):
            every = ", ".join(f"{value:.1f}" for value in values)
            print(f"| linux_{name} | {statistics.median(values):.1f} {unit} | {every} |")
    print()
    for disk in DISKS:
        for name, unit in DEPTH_FIGURES:
            if values := results.get(f"linux_{disk}_{name}"):
                print(f"BENCH linux_{disk}_{name}={number(statistics.median(values), unit)} {unit}")
    for name, unit in bench_net.FIGURES:
        if values := results.get(f"linux_{name}"):
            print(f"BENCH linux_{name}={statistics.median(values):.1f} {unit}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
