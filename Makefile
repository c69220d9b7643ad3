# dmakit's front door. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

TARGET := x86_64-unknown-none
KERNEL := target/$(TARGET)/release/dmakit
# Variables the QEMU runner reads (see boot/qemu-run).
export ACCEL ?= tcg
export MEM ?= 6G
export QEMU_ARGS ?=
export APPEND ?=
# noncoherent: the kernel plays a machine whose DMA does not snoop the CPU's caches.
export COHERENCE ?=
# The machine: pc (i440FX, no IOMMU) or q35 (with an Intel VT-d IOMMU).
export MACHINE ?= pc
# Disks for `make run`: pattern-filled images made on first run, or your own.
# The modern virtio disk (vdb) is attached on q35 only; the AHCI disk (sda) and the
# NVMe disk (nvme0n1) on both.
DEFAULT_VIRTIO_DISK := build/virtio.img
DEFAULT_ATA_DISK := build/ata.img
DEFAULT_MODERN_VIRTIO_DISK := build/modern.img
DEFAULT_AHCI_DISK := build/ahci.img
DEFAULT_NVME_DISK := build/nvme.img
VIRTIO_DISK ?= $(DEFAULT_VIRTIO_DISK)
ATA_DISK ?= $(DEFAULT_ATA_DISK)
MODERN_VIRTIO_DISK ?= $(DEFAULT_MODERN_VIRTIO_DISK)
AHCI_DISK ?= $(DEFAULT_AHCI_DISK)
NVME_DISK ?= $(DEFAULT_NVME_DISK)
# The network of make run and make gdb: user (QEMU's user-mode network, restricted,
# with host forwards on 127.0.0.1 only: UDP and TCP NET_ECHO_PORT to the guest's echo
# port 7, TCP NET_STATS_PORT to its report port 11), or empty for no network card.
export NET ?= user
export NET_ECHO_PORT ?= 5007
export NET_STATS_PORT ?= 5011
# Benchmarks: boots per run; LINUX=1 adds Linux boots to make bench; seconds per fio job.
RUNS ?= 3
export LINUX ?=
export FIO_RUNTIME ?= 3

# make gdb: the port of QEMU's gdb stub, and more arguments for gdb.
export GDB_PORT ?= 1234
export GDB_ARGS ?=
# Seconds a test kernel may run before it is killed and counted as failed.
export TEST_TIMEOUT ?= 300
# make test-qemu: NAME runs only the test kernel tests/NAME.rs; NAME:TEXT only
# its tests whose name contains TEXT (passed as test.filter=TEXT on its command line).
TEST ?=

.PHONY: help deps build run gdb disks reset-disks test test-host test-qemu test-e2e test-docs net-check soak bench bench-linux linux-guest check clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  variables: MACHINE=pc|q35  ACCEL=tcg|kvm  MEM=6G  QEMU_ARGS='...'  APPEND='kernel command line'"
	@echo "             COHERENCE=noncoherent: DMA that does not snoop the CPU's caches (dma.coherence=)"
	@echo "             VIRTIO_DISK=  ATA_DISK=  MODERN_VIRTIO_DISK= (q35 only)  AHCI_DISK=  NVME_DISK=: raw disk images for"
	@echo "             make run and make gdb (default build/*.img); set one empty to leave that disk out"
	@echo "             NET=user: virtio-net on QEMU's user network (empty: none), with host"
	@echo "             forwards on 127.0.0.1 only: NET_ECHO_PORT=5007 (UDP, TCP echo), NET_STATS_PORT=5011"
	@echo "             RUNS=3 (boots of bench, bench-linux)  FIO_RUNTIME=3 (s per fio job in Linux)"
	@echo "             LINUX=1: make bench boots Linux after each dmakit boot, prints both side by side"
	@echo "             (NET= also leaves the network phase, echo over virtio-net, out of bench and bench-linux)"
	@echo "             TEST_TIMEOUT=300 (s per test kernel)  GDB_PORT=1234  GDB_ARGS='...' (make gdb)"
	@echo "             SOAK_MINUTES=30 (make soak)  SOAK_SEED=N (make soak: replay a run's random script)"
	@echo "             TEST=NAME: make test-qemu runs only tests/NAME.rs; TEST=NAME:TEXT only its tests"
	@echo "             whose name contains TEXT"

# rust-toolchain.toml lists the target, rustfmt and clippy; rustup adds them when it
# installs the toolchain, but not always to one installed before without them (a
# minimal profile, say), so deps checks each and adds what is missing.
deps: ## Install what is missing: the Rust target, rustfmt and clippy, QEMU, rsvg-convert (the pictures' check), gdb (the gdb lesson's check)
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	@for c in rustfmt clippy; do \
	    rustup component list --installed | grep -q "^$$c-" || rustup component add $$c; \
	done
	@# Each program with the Debian package that has it.
	@for wanted in qemu-system-x86_64:qemu-system-x86 rsvg-convert:librsvg2-bin gdb:gdb; do \
	    program=$${wanted%%:*}; package=$${wanted#*:}; \
	    command -v $$program >/dev/null && continue; \
	    if [ "$$(id -u)" = 0 ]; then \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$package || exit 1; \
	    else \
	        echo "$$program is missing. Install it with:"; \
	        echo "    sudo apt-get install -y $$package"; \
	        exit 1; \
	    fi; \
	done

build: deps ## Build the bootable kernel
	cargo build --release -p dmakit-image --target $(TARGET)

DISK_VARIABLES = VIRTIO_DISK="$(VIRTIO_DISK)" ATA_DISK="$(ATA_DISK)" MODERN_VIRTIO_DISK="$(MODERN_VIRTIO_DISK)" \
	    AHCI_DISK="$(AHCI_DISK)" NVME_DISK="$(NVME_DISK)"

run: build disks ## Boot dmakit in QEMU (serial on this terminal; Ctrl-A X quits)
	$(DISK_VARIABLES) boot/qemu-run --run $(KERNEL)

gdb: build disks ## Boot paused with QEMU's gdb stub (GDB_PORT) and attach gdb with the kernel's symbols
	@command -v gdb >/dev/null || { echo "gdb is missing. Install it with:"; \
	    echo "    sudo apt-get install -y gdb"; exit 1; }
	$(DISK_VARIABLES) boot/qemu-run --gdb $(KERNEL)

# One disk at a time (no list split at `:`, which a path may hold): an empty
# name is no disk; a missing default image is made; a missing image of yours is
# an error.
disks: ## Make the default disk images for make run if missing (16 MiB, pattern-filled)
	@mkdir -p build
	@disk() { \
	    if [ -z "$$1" ] || [ -e "$$1" ]; then return 0; fi; \
	    if [ "$$1" = "$$2" ]; then boot/make-disk "$$1" 16 "$$3"; \
	    else echo "disk image $$1 does not exist (an empty name leaves the disk out)"; return 1; fi; \
	}; \
	disk "$(VIRTIO_DISK)" $(DEFAULT_VIRTIO_DISK) V && disk "$(ATA_DISK)" $(DEFAULT_ATA_DISK) A && \
	    disk "$(MODERN_VIRTIO_DISK)" $(DEFAULT_MODERN_VIRTIO_DISK) M && disk "$(AHCI_DISK)" $(DEFAULT_AHCI_DISK) S && \
	    disk "$(NVME_DISK)" $(DEFAULT_NVME_DISK) N

reset-disks: ## Remake the default disk images (build/*.img) with the pattern, undoing writes; no build
	@mkdir -p build
	boot/make-disk $(DEFAULT_VIRTIO_DISK) 16 V
	boot/make-disk $(DEFAULT_ATA_DISK) 16 A
	boot/make-disk $(DEFAULT_MODERN_VIRTIO_DISK) 16 M
	boot/make-disk $(DEFAULT_AHCI_DISK) 16 S
	boot/make-disk $(DEFAULT_NVME_DISK) 16 N

test-host: deps ## Host unit and property tests only (and the self-tests of the net traffic checker, 127.0.0.1 only, and of make run's terminal filter; the docs' pictures rendered and checked)
	cargo test --workspace --exclude dmakit-tests --exclude dmakit-image
	tests/net_traffic_selftest.py
	tests/terminal_filter_selftest.py
	tests/pictures_check.py

# The kernel is the part of TEST before the first `:`, the filter the rest.
test-qemu: deps ## The QEMU test kernels only (TEST=NAME or NAME:TEXT: one kernel, some of its tests)
	@test='$(TEST)'; kernel=$${test%%:*}; filter=; \
	case $$test in *:*) filter=$${test#*:} ;; esac; \
	if [ -n "$$filter" ] && [ -z "$$kernel" ]; then \
	    echo "TEST=NAME:TEXT needs the test kernel's name (tests/NAME.rs)"; exit 2; \
	fi; \
	set -x; APPEND="$$APPEND$${filter:+ test.filter=$$filter}" \
	    cargo test --target $(TARGET) -p dmakit-tests --no-fail-fast $${kernel:+--test "$$kernel"}

test-e2e: deps ## Pipe a script into make run and check the disks on the host
	tests/e2e-shell

net-check: build ## Drive the network stack from this machine (127.0.0.1 only): UDP and TCP echo, the report, 4 machines
	tests/net-check $(KERNEL)

test-docs: deps ## Replay the shell sessions of the README and docs (tour, experiments, exercises, drivers, dma) and the README's boot story; compare with the docs
	tests/docs-check

test: deps ## Host tests, the pictures' check and the gdb lesson's check, every QEMU test kernel (q35 ones on q35) coherent and non-coherent, the e2e test, the docs check and net-check; ends with "N passed, N failed"
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	cargo test --workspace --exclude dmakit-tests --exclude dmakit-image 2>&1 | tee -a "$$log"; host=$$?; \
	tests/net_traffic_selftest.py 2>&1 | tee -a "$$log"; selftest=$$?; \
	tests/terminal_filter_selftest.py 2>&1 | tee -a "$$log"; filter=$$?; \
	tests/pictures_check.py 2>&1 | tee -a "$$log"; pictures=$$?; \
	tests/gdb-check 2>&1 | tee -a "$$log"; gdb=$$?; \
	cargo test --target $(TARGET) -p dmakit-tests --no-fail-fast 2>&1 | tee -a "$$log"; qemu=$$?; \
	echo "== the QEMU test kernels again on a machine whose DMA does not snoop (COHERENCE=noncoherent)"; \
	COHERENCE=noncoherent cargo test --target $(TARGET) -p dmakit-tests --no-fail-fast 2>&1 | tee -a "$$log"; \
	noncoherent=$$?; \
	tests/e2e-shell 2>&1 | tee -a "$$log"; e2e=$$?; \
	tests/docs-check 2>&1 | tee -a "$$log"; docs=$$?; \
	$(MAKE) --no-print-directory net-check 2>&1 | tee -a "$$log"; net=$$?; \
	echo; tests/tally "$$log" $$host $$selftest $$filter $$gdb $$pictures $$qemu $$noncoherent $$e2e $$docs $$net

soak: build ## Every disk on pc and q35 for SOAK_MINUTES (30): random transfers, queue depths, stop/start, EIO, tiny bounce budgets, the IOMMU; every byte checked on the host (not part of test)
	tests/soak $(KERNEL)

bench: build $(if $(filter 1,$(LINUX)),linux-guest) ## Benchmark in the Linux peer's setup (RUNS boots, 256 MiB disks; LINUX=1: Linux too)
	tests/bench $(KERNEL) $(RUNS)

bench-linux: deps linux-guest ## Linux (Debian's kernel, fio) in make bench's QEMU setup: the same figures
	tests/bench_linux.py $(RUNS)

# Downloads what it lacks (apt-get download, no root) into build/linux/debs.
linux-guest: ## Build the Linux guest of bench-linux (Debian's kernel, fio) in build/linux
	tests/linux/build-guest build/linux

check: deps ## Format check and clippy -D warnings (host and kernel target)
	cargo fmt --all --check
	cargo clippy --workspace --exclude dmakit-tests --exclude dmakit-image --lib --tests -- -D warnings
	cargo clippy --target $(TARGET) --workspace -- -D warnings
	cargo clippy --target $(TARGET) -p dmakit-tests --tests -- -D warnings

clean: ## Remove build output and the default disk images
	cargo clean
	rm -rf build
