"""The network phase of `make bench`: one boot of a guest that serves echo and stats, measured from the host.

The guest (dmakit booted without `bench`: its shell, serving the network; or
the Linux guest with linuxbench.net=1) boots in tests/bench_setup.py's machine
plus a virtio-net on QEMU's user network, reached through forwards
on 127.0.0.1 at ports chosen free at run time. Once a UDP echo answers, the
host runs tests/net_traffic.py's checks: UDP_COUNT datagrams one at a time
(net_udp_echo_qd1, round trips/s), UDP_COUNT with 32 in flight
(net_udp_echo_qd32), a TCP echo of TCP_BYTES (net_tcp_echo_MBps, 10^6 bytes/s),
then reads the stats service; then it writes `poweroff` to the guest's serial
console and kills QEMU if it is still there after STOP_GRACE seconds. Every step
has a deadline and the whole boot a timer, so a guest that hangs costs at most
PHASE_LIMIT seconds. NET= (empty) in the environment leaves the phase out.
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in tests/
import net_traffic  # noqa: E402

NET = os.environ.get("NET", "user") == "user"  # NET= (empty) leaves the network phase out
UDP_COUNT = 2000
TCP_BYTES = 64 << 20
FIGURES = [("net_udp_echo_qd1", "rt/s"), ("net_udp_echo_qd32", "rt/s"), ("net_tcp_echo_MBps", "MB/s")]
UP_DEADLINE = 300  # TCG boots slowly: dmakit with 6 GiB, Linux with its modules
STOP_GRACE = 15
# Up, two UDP checks, the TCP check and the stats at their own deadlines, and a margin.
PHASE_LIMIT = UP_DEADLINE + 2 * 120 + 300 + 30 + 60


def free_ports(attempts=50):
    """(echo_port, stats_port): free on 127.0.0.1, the echo port for both UDP and TCP.

    The ports are closed again before QEMU binds them: another program could
    take one in between, and then QEMU fails to start (reported as such).
    """
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stats:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            stats.bind(("127.0.0.1", 0))
            return port, stats.getsockname()[1]
    raise RuntimeError(f"no port free for both UDP and TCP on 127.0.0.1 in {attempts} tries")


def measure(echo_port, stats_port, udp_count=UDP_COUNT, tcp_bytes=TCP_BYTES, seed=None, out=None):
    """The checks against a guest that is up: ({figure: value}, [problems], stats text or None)."""
    lines = []
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    figures, _, stats = net_traffic.run_checks(echo_port, stats_port, udp_count, (1, 32), tcp_bytes, seed,
                                               out=lines.append)
    for line in lines:
        if out:
            out(line)
    problems = [line.removeprefix("test ") for line in lines if " ... FAILED" in line]
    return {name: value for name, (value, _) in figures.items()}, problems, stats


class Guest:
    """A QEMU process whose serial output goes to a log, read by a thread so that it never blocks."""

    def __init__(self, command, log_path):
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        self.lines = []
        self.reader = threading.Thread(target=self._read, name="guest-serial", daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self.lines.append(line)
            self.log.write(line + "\n")

    def alive(self):
        return self.process.poll() is None

    def stop(self, grace=STOP_GRACE):
        """Asks the guest to power off (its console reads `poweroff`), then kills QEMU: True if it had to."""
        try:
            self.process.stdin.write(b"\npoweroff\n")
            self.process.stdin.close()
        except OSError:  # QEMU is gone already
            pass
        killed = False
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            killed = True
        self.reader.join(timeout=10)
        self.log.close()
        return killed


def run_phase(command_for, log_path, label, up_deadline=UP_DEADLINE, limit=PHASE_LIMIT, stop_grace=STOP_GRACE,
              **checks):
    """Boots `command_for(echo_port, stats_port)`, waits for the echo, measures, stops: as measure() returns.

    The guest's serial output goes to `log_path`, the stats it served to
    `log_path`.stats. `label` names the guest in the lines printed (to
    stderr); `checks` go to measure() (udp_count, tcp_bytes, seed).
    """
    echo_port, stats_port = free_ports()
    start = time.monotonic()
    guest = Guest(command_for(echo_port, stats_port), log_path)
    timer = threading.Timer(limit, guest.process.kill)
    timer.start()
    figures, problems, stats = {}, [], None
    try:
        try:
            seconds = net_traffic.wait_until_up(echo_port, up_deadline, alive=guest.alive)
            print(f"{label}: network up {seconds:.1f} s after QEMU started (echo 127.0.0.1:{echo_port}, "
                  f"stats 127.0.0.1:{stats_port})", file=sys.stderr)
        except net_traffic.TrafficError as error:
            problems.append(f"{label}: {error}")
        else:
            figures, found, stats = measure(echo_port, stats_port,
                                            out=lambda line: print(f"{label}: {line}", file=sys.stderr), **checks)
            problems += [f"{label}: {problem}" for problem in found]
    finally:
        timer.cancel()
        if guest.alive():
            if guest.stop(stop_grace):
                print(f"{label}: did not power off within {stop_grace} s: killed", file=sys.stderr)
        else:
            problems.append(f"{label}: QEMU exited early with {guest.process.returncode} (log {log_path})")
            guest.stop()
    if stats:
        with open(f"{log_path}.stats", "w") as report:
            report.write(stats)
    print(f"{label}: {time.monotonic() - start:.0f} s, guest log {log_path}", file=sys.stderr)
    return figures, problems, stats
