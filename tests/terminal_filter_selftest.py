#!/usr/bin/env python3
"""Self-test of boot/terminal-filter, the interactive `make run`'s output path,
without QEMU: fake serial and stderr streams through real FIFOs.

    tests/terminal_filter_selftest.py      prints `test NAME ... ok/FAILED` and "N passed, N failed"
"""
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

FILTER = Path(__file__).resolve().parent.parent / "boot" / "terminal-filter"


def run(steps):
    """Runs the filter on two FIFOs; `steps` is a list of ("serial" | "errors",
    bytes) written in order with a pause between; returns (stdout, status)."""
    with tempfile.TemporaryDirectory() as scratch:
        serial_path, errors_path = os.path.join(scratch, "serial"), os.path.join(scratch, "errors")
        os.mkfifo(serial_path)
        os.mkfifo(errors_path)
        process = subprocess.Popen([str(FILTER), serial_path, errors_path], stdout=subprocess.PIPE)
        serial = os.open(serial_path, os.O_WRONLY)
        errors = os.open(errors_path, os.O_WRONLY)
        for stream, data in steps:
            os.write(serial if stream == "serial" else errors, data)
            # Each write reaches the filter on its own, as typing would.
            time.sleep(0.05)
        os.close(serial)
        os.close(errors)
        output, _ = process.communicate(timeout=10)
        return output, process.returncode


def test_the_firmware_terminal_resets_are_dropped_even_cut_in_two():
    output, status = run([
        ("serial", b"\x1bc\x1b[?7"),
        ("serial", b"l\x1b[2J\x1b[0mSeaBIOS\r\n\x1b"),
        ("serial", b"[1mbold\x1b[0m\r\n"),
    ])
    assert status == 0, status
    assert output == b"\x1b[0mSeaBIOS\r\n\x1b[1mbold\x1b[0m\r\n", output


def test_qemus_lines_wait_for_the_typed_line_to_end():
    output, status = run([
        ("serial", b"dmakit> "),
        ("serial", b"rea"),
        ("errors", b"qemu-system-x86_64: vtd fault 1\n"),
        ("serial", b"d vdb 0 8"),
        ("serial", b"\r\n"),
        ("serial", b"vdb: sectors 0..8\r\n"),
    ])
    assert status == 0, status
    expected = b"dmakit> read vdb 0 8\r\nqemu: qemu-system-x86_64: vtd fault 1\r\nvdb: sectors 0..8\r\n"
    assert output == expected, output


def test_a_line_left_when_qemu_ends_is_still_shown():
    output, status = run([("serial", b"dmakit> "), ("errors", b"last words")])
    assert status == 0, status
    assert output == b"dmakit> qemu: last words\r\n", output


def test_a_reader_that_goes_away_is_reported_as_such():
    with tempfile.TemporaryDirectory() as scratch:
        serial_path, errors_path = os.path.join(scratch, "serial"), os.path.join(scratch, "errors")
        os.mkfifo(serial_path)
        os.mkfifo(errors_path)
        read_end, write_end = os.pipe()
        process = subprocess.Popen([str(FILTER), serial_path, errors_path], stdout=write_end)
        os.close(write_end)
        serial = os.open(serial_path, os.O_WRONLY)
        errors = os.open(errors_path, os.O_WRONLY)
        os.write(serial, b"first\r\n")
        os.read(read_end, 100)
        os.close(read_end)
        try:
            for _ in range(50):
                os.write(serial, b"more\r\n")
                time.sleep(0.01)
        except BrokenPipeError:
            pass
        status = process.wait(timeout=10)
        os.close(serial)
        os.close(errors)
        assert status == 141, status


def main():
    tests = [(name, function) for name, function in globals().items() if name.startswith("test_")]
    failed = 0
    for name, function in tests:
        try:
            function()
            print(f"test {name} ... ok")
        except Exception:
            failed += 1
            print(f"test {name} ... FAILED")
            traceback.print_exc()
    print(f"{len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
