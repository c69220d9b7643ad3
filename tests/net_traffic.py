#!/usr/bin/env python3
"""Echo and stats traffic for a guest behind QEMU's host forwards, on 127.0.0.1 only.

The guest (dmakit, or the Linux guest of `make bench`) serves UDP echo and TCP
echo on port 7 and a text report on TCP port 11; QEMU forwards
127.0.0.1:ECHO_PORT (udp and tcp) to port 7 and 127.0.0.1:STATS_PORT to 11.
Every check here talks to 127.0.0.1 and nothing else, every socket has a
timeout and every loop a bound, so a guest that hangs makes a check fail, not
hang.

    udp_echo     datagrams of random sizes (1..1472 bytes), at most DEPTH in
                 flight; each echo must be byte-exact and come back exactly once
                 (a datagram not echoed in time is resent a bounded number of
                 times: QEMU's user network may drop under bursts)
    tcp_echo     a random stream written by one thread and read back by another,
                 compared as it arrives; then our side shuts down its writing
                 half and the server must close
    fetch_stats  reads the report until the server closes
    wait_until_up  retries a tiny UDP echo until the guest answers

    tests/net_traffic.py --echo-port P [--stats-port S] [--udp N] [--udp-depth 1,32]
                         [--tcp 64M] [--seed X] [--wait SECONDS] [--bench]

Prints `test NAME ... ok` or `test NAME ... FAILED (reason)` per check, with
--bench also `BENCH name=value unit` lines; exits 0 only if every check passed.
"""
import argparse
import collections
import hashlib
import random
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in tests/

HOST = "127.0.0.1"  # the only address this module ever talks to
MAX_DATAGRAM = 1472  # the most UDP payload one 1500-byte Ethernet frame carries
TCP_CHUNK = 64 * 1024


class TrafficError(Exception):
    """A check that failed: the message says what was wrong."""


UdpResult = collections.namedtuple("UdpResult", "sent echoed resent late seconds round_trips_per_second")
TcpResult = collections.namedtuple("TcpResult", "bytes seconds megabytes_per_second sha256")


def _remaining(deadline, what):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TrafficError(f"deadline passed {what}")
    return left


class _Datagram:
    """One datagram in flight: its bytes, its number, when to give up on this copy."""

    __slots__ = ("payload", "number", "resend_at", "copies")

    def __init__(self, payload, number, resend_at):
        self.payload, self.number, self.resend_at, self.copies = payload, number, resend_at, 1


def _closest_difference(data, in_flight):
    """Why `data` matches nothing in flight: the first differing byte of one of the same length."""
    for datagram in in_flight:
        if len(datagram.payload) == len(data):
            offset = next(i for i, (a, b) in enumerate(zip(datagram.payload, data)) if a != b)
            return (f"; datagram #{datagram.number} has the same length and differs first at byte "
                    f"{offset} (sent {datagram.payload[offset]:#04x}, got {data[offset]:#04x})")
    return ""


def udp_echo(port, count, seed, depth=1, deadline_s=120.0, timeout_s=1.0, max_sends=6, quiet_s=0.2):
    """Sends `count` random datagrams to 127.0.0.1:`port`, at most `depth` unanswered; checks the echoes.

    Each datagram must be echoed byte-exact and exactly once. A datagram not
    echoed within `timeout_s` is sent again, at most `max_sends` times in all;
    echoes of a resent datagram beyond the first are tolerated (counted as
    `late`: the first copy may only have been slow), any other echo is an
    error. After the last echo, `quiet_s` more of listening catches an echo
    sent twice. Returns a UdpResult, raises TrafficError.
    """
    if count < 1 or depth < 1:
        raise ValueError("count and depth must be at least 1")
    rng = random.Random(seed)
    deadline = time.monotonic() + deadline_s
    try:
        return _udp_exchange(port, count, rng, depth, deadline, timeout_s, max_sends, quiet_s)
    except ConnectionRefusedError:  # an ICMP port unreachable, on send or receive
        raise TrafficError(f"127.0.0.1:{port} refused the datagrams (nothing listens there)") from None


def _udp_exchange(port, count, rng, depth, deadline, timeout_s, max_sends, quiet_s):
    in_flight = []  # in the order sent
    by_payload = collections.defaultdict(collections.deque)  # payload -> datagrams in flight, a multiset
    tolerated = collections.Counter()  # payload -> echoes still allowed from resent copies
    sent = echoed = resent = late = 0
    # Every turn receives a datagram or resends one: both are bounded.
    turns_left = count * (max_sends + 1) * 2 + 1000
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))  # echoes from anywhere else are not ours
        start = time.monotonic()
        while echoed < count:
            turns_left -= 1
            if turns_left < 0:
                raise TrafficError(f"no progress: {echoed} of {count} echoed")
            while len(in_flight) < depth and sent < count:
                payload = rng.randbytes(rng.randint(1, MAX_DATAGRAM))
                datagram = _Datagram(payload, sent, time.monotonic() + timeout_s)
                sock.send(payload)
                sent += 1
                in_flight.append(datagram)
                by_payload[payload].append(datagram)
            wait = min(datagram.resend_at for datagram in in_flight) - time.monotonic()
            sock.settimeout(max(0.001, min(wait, _remaining(deadline, f"with {echoed} of {count} echoed"))))
            try:
                data = sock.recv(65536)
                late, echoed = _match(data, by_payload, in_flight, tolerated, late, echoed)
            except socket.timeout:
                pass
            now = time.monotonic()  # resends are due even while other echoes keep coming
            for datagram in in_flight:
                if datagram.resend_at <= now:
                    if datagram.copies >= max_sends:
                        raise TrafficError(f"datagram #{datagram.number} ({len(datagram.payload)} bytes) "
                                           f"not echoed after {datagram.copies} sends, {timeout_s} s apart")
                    sock.send(datagram.payload)
                    datagram.copies += 1
                    datagram.resend_at = now + timeout_s
                    resent += 1
        seconds = time.monotonic() - start
        # An echo sent twice: the second copy of the last datagrams comes after the end.
        quiet_until = min(time.monotonic() + quiet_s, deadline)
        for _ in range(10000):
            left = quiet_until - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                break
            late, echoed = _match(data, by_payload, in_flight, tolerated, late, echoed)
    return UdpResult(sent, echoed, resent, late, seconds, count / seconds if seconds > 0 else float("inf"))


def _match(data, by_payload, in_flight, tolerated, late, echoed):
    """Takes one echo off the multiset in flight: (late, echoed) counted, or TrafficError."""
    waiting = by_payload.get(data)
    if waiting:
        datagram = waiting.popleft()
        if not waiting:
            del by_payload[data]
        in_flight.remove(datagram)
        tolerated[data] += datagram.copies - 1
        return late, echoed + 1
    if tolerated[data] > 0:
        tolerated[data] -= 1
        return late + 1, echoed
    raise TrafficError(f"unexpected echo of {len(data)} bytes after {echoed} good ones (not in flight, "
                       f"not a resent copy){_closest_difference(data, in_flight)}")


def _stream_chunks(seed, total_bytes):
    """The test stream: the same chunks for the writer and for the reader's comparison."""
    rng = random.Random(seed)
    left = total_bytes
    while left > 0:
        size = min(TCP_CHUNK, left)
        left -= size
        yield rng.randbytes(size)


def tcp_echo(port, total_bytes, seed, deadline_s=300.0, step_timeout_s=30.0):
    """Streams `total_bytes` random bytes to 127.0.0.1:`port`, checks the echo byte-exact, expects the close.

    A writer thread sends while this thread reads and compares against the same
    stream regenerated from `seed` (neither side holds the whole stream). Once
    written, our side shuts down writing; the server must then echo the rest
    and close. Returns a TcpResult (MB/s in 10^6 bytes), raises TrafficError.
    """
    deadline = time.monotonic() + deadline_s
    writer_error = []
    sock = socket.create_connection((HOST, port), timeout=min(step_timeout_s, deadline_s))
    sock.settimeout(min(step_timeout_s, deadline_s))

    def write():
        try:
            for chunk in _stream_chunks(seed, total_bytes):
                sock.settimeout(max(0.001, min(step_timeout_s, deadline - time.monotonic())))
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except OSError as error:  # also when the reader closes the socket on a failure
            writer_error.append(error)

    start = time.monotonic()
    writer = threading.Thread(target=write, name="tcp-echo-writer", daemon=True)
    writer.start()
    digest = hashlib.sha256()
    expected = _stream_chunks(seed, total_bytes)
    pending = memoryview(b"")  # the expected bytes not yet compared
    received = 0
    try:
        # Every turn reads at least one byte, or ends the loop: bounded by the stream.
        for _ in range(total_bytes + 2):
            sock.settimeout(max(0.001, min(step_timeout_s, _remaining(
                deadline, f"after {received} of {total_bytes} bytes echoed"))))
            try:
                data = sock.recv(256 * 1024)
            except socket.timeout:
                raise TrafficError(f"no echo for {step_timeout_s:.0f} s after {received} of {total_bytes} bytes")
            except ConnectionResetError:
                raise TrafficError(f"connection reset after {received} of {total_bytes} bytes echoed")
            if not data:
                break
            digest.update(data)
            offset = 0
            while offset < len(data):
                if not pending:
                    pending = memoryview(next(expected, b""))
                    if not pending:
                        raise TrafficError(f"echoed more than the {total_bytes} bytes sent")
                take = min(len(pending), len(data) - offset)
                if pending[:take] != data[offset:offset + take]:
                    first = next(i for i in range(take) if pending[i] != data[offset + i])
                    raise TrafficError(f"echo differs at byte {received + offset + first} "
                                       f"(sent {pending[first]:#04x}, got {data[offset + first]:#04x})")
                pending, offset = pending[take:], offset + take
            received += len(data)
        seconds = time.monotonic() - start
        if received != total_bytes:
            raise TrafficError(f"the server closed after {received} of {total_bytes} bytes echoed")
    finally:
        if writer.is_alive():
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a writer stuck in sendall
            except OSError:
                pass
        writer.join(timeout=max(1.0, min(step_timeout_s, deadline - time.monotonic())))
        sock.close()
    if writer.is_alive():
        raise TrafficError("the writer did not finish")
    if writer_error:
        raise TrafficError(f"writing failed: {writer_error[0]}")
    return TcpResult(total_bytes, seconds, total_bytes / seconds / 1e6 if seconds > 0 else float("inf"),
                     digest.hexdigest())


def fetch_stats(port, deadline_s=30.0, max_bytes=1 << 20):
    """The text the stats service on 127.0.0.1:`port` writes before it closes; raises TrafficError."""
    deadline = time.monotonic() + deadline_s
    parts, size = [], 0
    with socket.create_connection((HOST, port), timeout=deadline_s) as sock:
        for _ in range(max_bytes + 1):
            sock.settimeout(max(0.001, _remaining(deadline, f"reading the stats after {size} bytes")))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                raise TrafficError(f"the stats did not end within {deadline_s:.0f} s ({size} bytes read)")
            if not data:
                break
            parts.append(data)
            size += len(data)
            if size > max_bytes:
                raise TrafficError(f"the stats are longer than {max_bytes} bytes")
    return b"".join(parts).decode("utf-8", errors="replace")


def wait_until_up(port, deadline_s, probe_timeout_s=1.0, alive=None):
    """Seconds until a tiny UDP echo on 127.0.0.1:`port` answers; TrafficError at the deadline.

    `alive`, if given, is asked between probes: when it says False (QEMU
    exited, say) waiting stops at once.
    """
    start = time.monotonic()
    deadline = start + deadline_s
    for attempt in range(int(deadline_s / 0.05) + 2):  # every probe takes at least 50 ms
        if alive is not None and not alive():
            raise TrafficError(f"gave up waiting after {time.monotonic() - start:.1f} s: the guest is gone")
        left = deadline - time.monotonic()
        if left <= 0:
            break
        probe = b"up? %d" % attempt
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((HOST, port))
            sock.settimeout(max(0.05, min(probe_timeout_s, left)))
            try:
                sock.send(probe)
                probe_sent = time.monotonic()
                # Stale or stray datagrams are skipped; the probe's own echo ends the wait.
                for _ in range(100):
                    if sock.recv(65536) == probe:
                        return time.monotonic() - start
                    if time.monotonic() - probe_sent > probe_timeout_s:
                        break
            except socket.timeout:
                continue
            except ConnectionRefusedError:  # nothing listens on the host port yet
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    raise TrafficError(f"no UDP echo on port {port} within {deadline_s:.0f} s")


def parse_size(text):
    """A byte count like 65536, 64K or 64M (binary: K = 1024)."""
    multiplier = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if multiplier > 1 else text
    if not digits.isdigit():
        raise ValueError(f"not a size: {text!r} (a number, with K, M or G)")
    return int(digits) * multiplier


def run_checks(echo_port, stats_port=None, udp_count=0, udp_depths=(1,), tcp_bytes=0, seed=1,
               wait_s=0.0, out=print):
    """Runs the checks asked for, each a `test NAME ... ok/FAILED` line through `out`.

    Returns ({figure: (value, unit)}, number of failed checks, the stats text or None).
    """
    figures, failures, stats = {}, 0, None

    def check(name, action):
        nonlocal failures
        try:
            result = action()
        except (TrafficError, OSError) as error:
            out(f"test {name} ... FAILED ({error})")
            failures += 1
            return None
        out(f"test {name} ... ok")
        return result

    if wait_s > 0 and check("net_up", lambda: wait_until_up(echo_port, wait_s)) is None:
        return figures, failures, stats
    for depth in udp_depths if udp_count else ():
        name = f"net_udp_echo_qd{depth}"
        result = check(name, lambda: udp_echo(echo_port, udp_count, seed, depth=depth))
        if result:
            figures[name] = (result.round_trips_per_second, "rt/s")
            if result.resent or result.late:
                out(f"note: {name}: {result.resent} resent, {result.late} late echoes of resent datagrams")
    if tcp_bytes:
        result = check("net_tcp_echo", lambda: tcp_echo(echo_port, tcp_bytes, seed))
        if result:
            figures["net_tcp_echo_MBps"] = (result.megabytes_per_second, "MB/s")
    if stats_port is not None:
        stats = check("net_stats", lambda: _nonempty(fetch_stats(stats_port)))
    return figures, failures, stats


def _nonempty(text):
    if not text.strip():
        raise TrafficError("the stats service closed without writing anything")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--echo-port", type=int, required=True)
    parser.add_argument("--stats-port", type=int)
    parser.add_argument("--udp", type=int, default=0, metavar="N", help="datagrams per UDP check")
    parser.add_argument("--udp-depth", default="1", metavar="D[,D...]", help="datagrams in flight (default 1)")
    parser.add_argument("--tcp", type=parse_size, default=0, metavar="BYTES", help="e.g. 64M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the guest first")
    parser.add_argument("--bench", action="store_true", help="print BENCH figure lines")
    args = parser.parse_args(argv)
    depths = [int(depth) for depth in args.udp_depth.split(",")]
    figures, failures, stats = run_checks(args.echo_port, args.stats_port, args.udp, depths, args.tcp,
                                          args.seed, args.wait)
    if stats is not None:
        print("--- stats ---")
        print(stats.rstrip("\n"))
    if args.bench:
        for name, (value, unit) in figures.items():
            print(f"BENCH {name}={value:.1f} {unit}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
