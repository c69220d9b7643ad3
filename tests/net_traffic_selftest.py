#!/usr/bin/env python3
"""Self-test of tests/net_traffic.py and the host side of tests/bench_net.py, without QEMU.

Echo and stats servers written here, on 127.0.0.1 ephemeral ports in threads,
stand in for the guest: good ones that the checks must pass, and broken ones
that they must fail (a corrupted byte, a datagram dropped for good, an echo
sent twice, a stream cut short or never closed, stats that never end). Run as
`--serve ECHO_PORT STATS_PORT`, this file is a fake guest for bench_net's
run_phase: it serves on those ports after a delay, like a guest booting behind
QEMU's forwards, and powers off when its stdin says `poweroff`.

    tests/net_traffic_selftest.py          prints `test NAME ... ok/FAILED` and "N passed, N failed"
"""
import collections
import hashlib
import io
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import redirect_stdout
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in tests/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_net  # noqa: E402
import bench_setup  # noqa: E402
import net_traffic  # noqa: E402
from net_traffic import TrafficError  # noqa: E402

HERE = Path(__file__).resolve()
HOST = "127.0.0.1"
SERVE_LIMIT = 60  # seconds any server thread lives at most


class Servers:
    """UDP echo and TCP echo on one port, stats on another; `udp`, `tcp`, `stats` pick a behaviour.

    udp:   ("good",) | ("drop_once", n) | ("drop_forever", n) | ("corrupt", n) | ("twice", n) | ("delay", n, s)
           n counts distinct payloads in the order first seen (a resend is the same payload)
    tcp:   ("good",) | ("corrupt", byte) | ("truncate", bytes) | ("no_close",) | ("extra",)
    stats: ("good",) | ("silent",) | ("endless",)
    """

    def __init__(self, udp=("good",), tcp=("good",), stats=("good",), echo_port=0, stats_port=0, udp_delay=0.0):
        self.udp_mode, self.tcp_mode, self.stats_mode = udp, tcp, stats
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.tcp = socket.create_server((HOST, echo_port))
        self.echo_port = self.tcp.getsockname()[1]
        self.stats_socket = socket.create_server((HOST, stats_port))
        self.stats_port = self.stats_socket.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp_delay = udp_delay
        if not udp_delay:
            self.udp.bind((HOST, self.echo_port))  # before any test sends: else it is refused
        self.datagrams = self.connections = 0
        for target in (self._serve_udp, self._serve_tcp, self._serve_stats):
            threading.Thread(target=target, daemon=True).start()

    def running(self):
        return not self.stop_event.is_set() and time.monotonic() - self.started < SERVE_LIMIT

    def close(self):
        self.stop_event.set()
        time.sleep(0.3)  # the threads see the event within their 0.2 s timeouts
        for sock in (self.tcp, self.stats_socket, self.udp):
            sock.close()

    def _serve_udp(self):
        if self.udp_delay:
            time.sleep(self.udp_delay)  # a guest still booting: nothing answers yet
            self.udp.bind((HOST, self.echo_port))
        self.udp.settimeout(0.2)
        order, copies = {}, {}
        while self.running():
            try:
                data, peer = self.udp.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            self.datagrams += 1
            number = order.setdefault(data, len(order))
            copies[data] = copies.get(data, 0) + 1
            kind, target = self.udp_mode[0], self.udp_mode[1] if len(self.udp_mode) > 1 else None
            if number == target and kind == "drop_forever":
                continue
            if number == target and kind == "drop_once" and copies[data] == 1:
                continue
            if number == target and kind == "delay" and copies[data] == 1:
                threading.Timer(self.udp_mode[2], self.udp.sendto, (data, peer)).start()
                continue
            if number == target and kind == "corrupt":
                data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x20]) + data[len(data) // 2 + 1:]
            self.udp.sendto(data, peer)
            if number == target and kind == "twice":
                self.udp.sendto(data, peer)

    def _accept_loop(self, listener, handle):
        listener.settimeout(0.2)
        while self.running():
            try:
                connection, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    def _serve_tcp(self):
        self._accept_loop(self.tcp, self._echo)

    def _echo(self, connection):
        kind = self.tcp_mode[0]
        position = 0
        with connection:
            connection.settimeout(0.2)
            while self.running():
                try:
                    data = connection.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                if kind == "corrupt" and position <= self.tcp_mode[1] < position + len(data):
                    at = self.tcp_mode[1] - position
                    data = data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]
                if kind == "truncate" and position + len(data) >= self.tcp_mode[1]:
                    # A clean close after the prefix (FIN, then reading on: a close with
                    # unread bytes would be a reset, which may discard what was echoed).
                    connection.sendall(data[:self.tcp_mode[1] - position])
                    connection.shutdown(socket.SHUT_WR)
                    kind = "drain"
                    continue
                if kind == "drain":
                    continue
                connection.sendall(data)
                position += len(data)
            if kind == "extra":
                connection.sendall(b"x")
            while kind == "no_close" and self.running():
                time.sleep(0.1)

    def _serve_stats(self):
        self._accept_loop(self.stats_socket, self._stats)

    def _stats(self, connection):
        with connection:
            if self.stats_mode[0] == "silent":
                return
            connection.sendall(f"udp datagrams {self.datagrams}\ntcp connections {self.connections}\n".encode())
            while self.stats_mode[0] == "endless" and self.running():
                time.sleep(0.1)


def serving(**modes):
    """Servers for one test, closed by the caller."""
    return Servers(**modes)


def expect_failure(action, *fragments):
    """Runs `action`; it must raise TrafficError whose message holds every fragment: that message."""
    try:
        action()
    except TrafficError as error:
        message = str(error)
        missing = [fragment for fragment in fragments if fragment not in message]
        assert not missing, f"failed, but the message {message!r} lacks {missing}"
        return message
    raise AssertionError("the check passed against a broken server")


# --- UDP ---------------------------------------------------------------------

def test_udp_echo_one_at_a_time_passes_a_good_server(servers):
    result = net_traffic.udp_echo(servers.echo_port, 200, seed=1, depth=1, deadline_s=30)
    assert (result.sent, result.echoed, result.resent, result.late) == (200, 200, 0, 0), result
    return f"{result.round_trips_per_second:.0f} rt/s"


def test_udp_echo_32_in_flight_passes_a_good_server(servers):
    result = net_traffic.udp_echo(servers.echo_port, 1000, seed=2, depth=32, deadline_s=30)
    assert (result.sent, result.echoed, result.late) == (1000, 1000, 0), result
    return f"{result.round_trips_per_second:.0f} rt/s, {result.resent} resent"


def test_udp_echo_resends_a_datagram_dropped_once(servers):
    servers.udp_mode = ("drop_once", 5)
    result = net_traffic.udp_echo(servers.echo_port, 20, seed=3, timeout_s=0.2, deadline_s=30)
    assert (result.echoed, result.resent, result.late) == (20, 1, 0), result
    return f"resent {result.resent}"


def test_udp_echo_tolerates_the_late_echo_of_a_resent_datagram(servers):
    servers.udp_mode = ("delay", 3, 0.5)
    result = net_traffic.udp_echo(servers.echo_port, 10, seed=4, timeout_s=0.2, deadline_s=30, quiet_s=0.8)
    assert result.echoed == 10 and result.resent >= 1 and result.late == 1, result
    return f"resent {result.resent}, late {result.late}"


def test_udp_echo_fails_on_a_corrupted_byte(servers):
    servers.udp_mode = ("corrupt", 7)
    return expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 20, seed=5, deadline_s=30),
                          "unexpected echo", "differs first at byte")


def test_udp_echo_fails_on_a_corrupted_byte_with_32_in_flight(servers):
    servers.udp_mode = ("corrupt", 40)
    return expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 100, seed=5, depth=32, deadline_s=30),
                          "unexpected echo")


def test_udp_echo_fails_on_a_datagram_dropped_forever(servers):
    servers.udp_mode = ("drop_forever", 5)
    return expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 20, seed=6, timeout_s=0.1,
                                                       max_sends=4, deadline_s=30),
                          "datagram #5", "not echoed after 4 sends")


def test_udp_echo_fails_on_a_datagram_echoed_twice(servers):
    servers.udp_mode = ("twice", 5)
    return expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 20, seed=7, deadline_s=30),
                          "unexpected echo")


def test_udp_echo_fails_on_the_last_datagram_echoed_twice(servers):
    servers.udp_mode = ("twice", 19)
    return expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 20, seed=8, deadline_s=30),
                          "unexpected echo", "after 20 good ones")


def test_udp_echo_fails_at_its_deadline_on_a_silent_server(servers):
    servers.udp_mode = ("drop_forever", 0)
    start = time.monotonic()
    message = expect_failure(lambda: net_traffic.udp_echo(servers.echo_port, 5, seed=9, timeout_s=0.1,
                                                          max_sends=1000, deadline_s=0.5), "deadline passed")
    assert time.monotonic() - start < 2, "the deadline did not bound the check"
    return message


def test_udp_echo_fails_when_nothing_listens():
    port = bench_net.free_ports()[0]
    return expect_failure(lambda: net_traffic.udp_echo(port, 5, seed=1, timeout_s=0.1, deadline_s=2), "refused")


def test_udp_matching_is_a_multiset_of_equal_tiny_payloads():
    in_flight = [net_traffic._Datagram(b"\x05", number, 0) for number in range(2)]
    by_payload = {b"\x05": collections.deque(in_flight)}
    tolerated = collections.Counter()
    late, echoed = net_traffic._match(b"\x05", by_payload, in_flight, tolerated, 0, 0)
    late, echoed = net_traffic._match(b"\x05", by_payload, in_flight, tolerated, late, echoed)
    assert (late, echoed, in_flight) == (0, 2, []), (late, echoed, in_flight)
    return expect_failure(lambda: net_traffic._match(b"\x05", by_payload, in_flight, tolerated, late, echoed),
                          "unexpected echo of 1 bytes")


# --- TCP ---------------------------------------------------------------------

def stream_sha256(seed, size):
    digest = hashlib.sha256()
    for chunk in net_traffic._stream_chunks(seed, size):
        digest.update(chunk)
    return digest.hexdigest()


def test_tcp_echo_passes_a_good_server(servers):
    size = 3 * 1024 * 1024 + 17
    result = net_traffic.tcp_echo(servers.echo_port, size, seed=10, deadline_s=30)
    assert result.bytes == size and result.sha256 == stream_sha256(10, size), result
    return f"{result.megabytes_per_second:.0f} MB/s"


def test_tcp_echo_fails_on_a_corrupted_byte(servers):
    servers.tcp_mode = ("corrupt", 1_000_000)
    return expect_failure(lambda: net_traffic.tcp_echo(servers.echo_port, 2 << 20, seed=11, deadline_s=30),
                          "differs at byte 1000000")


def test_tcp_echo_fails_when_the_server_closes_early(servers):
    servers.tcp_mode = ("truncate", 100_000)
    return expect_failure(lambda: net_traffic.tcp_echo(servers.echo_port, 1 << 20, seed=12, deadline_s=30),
                          "the server closed after 100000 of 1048576 bytes echoed")


def test_tcp_echo_fails_when_the_server_never_closes(servers):
    servers.tcp_mode = ("no_close",)
    return expect_failure(lambda: net_traffic.tcp_echo(servers.echo_port, 100_000, seed=13, deadline_s=30,
                                                       step_timeout_s=1), "no echo for", "100000 of 100000")


def test_tcp_echo_fails_on_extra_bytes(servers):
    servers.tcp_mode = ("extra",)
    return expect_failure(lambda: net_traffic.tcp_echo(servers.echo_port, 100_000, seed=14, deadline_s=30),
                          "more than the 100000 bytes")


# --- stats, waiting, sizes, the CLI ---------------------------------------------

def test_fetch_stats_reads_until_the_close(servers):
    text = net_traffic.fetch_stats(servers.stats_port, deadline_s=5)
    assert text.startswith("udp datagrams "), text
    return repr(text.splitlines()[0])


def test_fetch_stats_fails_when_the_report_never_ends(servers):
    servers.stats_mode = ("endless",)
    return expect_failure(lambda: net_traffic.fetch_stats(servers.stats_port, deadline_s=1), "did not end")


def test_stats_check_fails_on_an_empty_report(servers):
    servers.stats_mode = ("silent",)
    lines = []
    _, failures, _ = net_traffic.run_checks(servers.echo_port, servers.stats_port, out=lines.append)
    assert failures == 1 and lines[0].startswith("test net_stats ... FAILED"), lines
    return lines[0]


def test_wait_until_up_waits_for_a_booting_guest():
    servers = Servers(echo_port=bench_net.free_ports()[0], udp_delay=0.7)
    try:
        seconds = net_traffic.wait_until_up(servers.echo_port, deadline_s=10, probe_timeout_s=0.2)
    finally:
        servers.close()
    assert 0.6 < seconds < 5, seconds
    return f"up after {seconds:.1f} s"


def test_wait_until_up_gives_up_at_its_deadline():
    port = bench_net.free_ports()[0]
    start = time.monotonic()
    message = expect_failure(lambda: net_traffic.wait_until_up(port, deadline_s=1, probe_timeout_s=0.2),
                             "no UDP echo")
    assert time.monotonic() - start < 3
    return message


def test_parse_size():
    assert [net_traffic.parse_size(text) for text in ("123", "64K", "64M", "1g")] == [123, 64 << 10, 64 << 20, 1 << 30]
    for bad in ("", "M", "1.5M", "12Q"):
        try:
            net_traffic.parse_size(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} parsed")


def run_cli(arguments):
    output = io.StringIO()
    with redirect_stdout(output):
        status = net_traffic.main(arguments)
    return status, output.getvalue()


def test_cli_passes_and_prints_figures(servers):
    status, output = run_cli(["--echo-port", str(servers.echo_port), "--stats-port", str(servers.stats_port),
                              "--udp", "50", "--udp-depth", "1,32", "--tcp", "256K", "--wait", "5", "--bench"])
    for line in ("test net_up ... ok", "test net_udp_echo_qd1 ... ok", "test net_udp_echo_qd32 ... ok",
                 "test net_tcp_echo ... ok", "test net_stats ... ok", "BENCH net_udp_echo_qd1=",
                 "BENCH net_udp_echo_qd32=", "BENCH net_tcp_echo_MBps="):
        assert line in output, f"{line!r} not in {output!r}"
    assert status == 0, output
    return " | ".join(line for line in output.splitlines() if line.startswith("BENCH"))


def test_cli_exits_1_on_a_broken_server(servers):
    servers.tcp_mode = ("corrupt", 5)
    status, output = run_cli(["--echo-port", str(servers.echo_port), "--udp", "5", "--tcp", "64K"])
    assert status == 1 and "test net_tcp_echo ... FAILED (echo differs at byte 5" in output, output
    return next(line for line in output.splitlines() if "FAILED" in line)


# --- bench_net and the QEMU command line, with a fake guest ----------------------

def test_free_ports_are_free_for_udp_and_tcp():
    echo, stats = bench_net.free_ports()
    assert echo != stats
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.create_server((HOST, echo)):
        udp.bind((HOST, echo))
    return f"{echo}, {stats}"


class FakeImage:
    def __init__(self, path):
        self.path = path


def test_qemu_command_forwards_only_from_127_0_0_1():
    images = {disk: FakeImage(f"/tmp/{disk}.img") for disk in bench_setup.DISKS}
    command = bench_setup.qemu_command(images, "kernel", "", network=bench_setup.net_forwards(5555, 6666))
    netdev = command[command.index("-netdev") + 1]
    assert netdev == ("user,id=net0,restrict=off,hostfwd=udp:127.0.0.1:5555-:7,hostfwd=tcp:127.0.0.1:5555-:7,"
                      "hostfwd=tcp:127.0.0.1:6666-:11"), netdev
    assert "virtio-net-pci,netdev=net0" in command
    assert "-netdev" not in bench_setup.qemu_command(images, "kernel", "bench")
    import bench_linux
    linux = bench_linux.net_command(images, 5555, 6666)
    assert "linuxbench.net=1" in linux[linux.index("-append") + 1] and netdev in linux, linux
    return netdev


def fake_guest(*flags):
    return lambda echo, stats: [sys.executable, str(HERE), "--serve", str(echo), str(stats), *flags]


def test_run_phase_measures_a_fake_guest_and_powers_it_off():
    with tempfile.TemporaryDirectory() as scratch:
        log = os.path.join(scratch, "guest.log")
        start = time.monotonic()
        figures, problems, stats = bench_net.run_phase(fake_guest(), log, "fake", up_deadline=20, limit=120,
                                                       udp_count=100, tcp_bytes=1 << 20, seed=3)
        text = Path(log).read_text()
    assert not problems, problems
    assert sorted(figures) == sorted(name for name, _ in bench_net.FIGURES), figures
    assert stats and "udp datagrams" in stats, stats
    assert "FAKE_READY" in text and "FAKE_POWEROFF" in text, text
    assert time.monotonic() - start < 30
    return ", ".join(f"{name}={value:.0f}" for name, value in figures.items())


def test_run_phase_reports_a_broken_guest():
    with tempfile.TemporaryDirectory() as scratch:
        figures, problems, _ = bench_net.run_phase(fake_guest("--corrupt-tcp"), os.path.join(scratch, "log"),
                                                   "fake", up_deadline=20, limit=120, udp_count=20,
                                                   tcp_bytes=256 << 10, seed=3)
    assert "net_tcp_echo_MBps" not in figures and len(problems) == 1, problems
    assert problems[0].startswith("fake: net_tcp_echo ... FAILED (echo differs at byte 1000"), problems
    return problems[0]


def test_run_phase_kills_a_guest_that_does_not_power_off():
    with tempfile.TemporaryDirectory() as scratch:
        start = time.monotonic()
        figures, problems, _ = bench_net.run_phase(fake_guest("--ignore-poweroff"), os.path.join(scratch, "log"),
                                                   "fake", up_deadline=20, limit=120, stop_grace=1,
                                                   udp_count=10, tcp_bytes=1024, seed=3)
    assert not problems and len(figures) == 3, (figures, problems)
    assert time.monotonic() - start < 20
    return f"killed; {len(figures)} figures"


def test_run_phase_stops_waiting_when_the_guest_exits():
    with tempfile.TemporaryDirectory() as scratch:
        start = time.monotonic()
        figures, problems, _ = bench_net.run_phase(fake_guest("--exit-at-once"), os.path.join(scratch, "log"),
                                                   "fake", up_deadline=60, limit=120)
    assert not figures and time.monotonic() - start < 10, (figures, problems)
    assert any("the guest is gone" in problem for problem in problems), problems
    assert any("QEMU exited early with 3" in problem for problem in problems), problems
    return "; ".join(problems)


# --- the runner and the fake guest ------------------------------------------------

def run_tests():
    tests = [(name, function) for name, function in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, function in tests:
        servers = Servers() if "servers" in function.__code__.co_varnames[:function.__code__.co_argcount] else None
        try:
            note = function(servers) if servers else function()
        except Exception as error:  # noqa: BLE001 (any exception fails the test)
            print(f"test {name} ... FAILED ({type(error).__name__}: {error})")
            traceback.print_exc(limit=3)
            failed += 1
        else:
            print(f"test {name} ... ok" + (f"  [{note}]" if note else ""))
            passed += 1
        finally:
            if servers:
                servers.close()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def serve(echo_port, stats_port, flags):
    """A fake guest: answers after a boot delay, powers off on `poweroff` (unless told to ignore it)."""
    if "--exit-at-once" in flags:
        print("FAKE_EXIT", flush=True)
        return 3
    servers = Servers(echo_port=echo_port, stats_port=stats_port, udp_delay=0.5,
                      tcp=("corrupt", 1000) if "--corrupt-tcp" in flags else ("good",))
    print("FAKE_READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "poweroff" and "--ignore-poweroff" not in flags:
            print("FAKE_POWEROFF", flush=True)
            break
    else:
        time.sleep(SERVE_LIMIT)  # stdin closed: a guest that hangs until it is killed
    servers.close()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
    random.seed(0)
    sys.exit(run_tests())
