# The gdb lesson of docs/gdb.md as one script: `make gdb GDB_ARGS='-batch -x tests/gdb-lesson.gdb'`
# runs it; tests/gdb-check runs it and checks what gdb printed.
set pagination off
set confirm off
set print frame-arguments none

# gdb does not parse the names of Rust trait methods (`info functions program`
# lists them, with file and line): `break FILE:LINE` does. This finds the line
# of a driver's `fn program(`, so the script survives edits to the file.
python
import re
def break_at_function(path, name):
    for number, line in enumerate(open(path), 1):
        if re.match(r"\s*fn " + name + r"\(", line):
            gdb.execute("break %s:%d" % (path, number))
            return
    raise gdb.GdbError("no fn %s( in %s" % (name, path))
end

echo \n== 1. Stop where the kernel starts\n
break dmakit::kernel_main
continue
backtrace 1
delete

echo \n== 2. The prepare every block request goes through (the block layer's, not a driver's)\n
break dmakit::dma::slots::TransferSlots::prepare
continue
backtrace 4
delete

echo \n== 3. The IDE driver's program step, for the boot's first read of hda\n
python break_at_function("drivers/src/ata/channel.rs", "program")
continue
backtrace 3
finish
delete

echo \n== 4. The PRD table the driver just wrote, read from physical memory through QEMU\n
python
import re
log = open("build/gdb-serial.log").read()
table = re.search(r"prd-table (0x[0-9a-f]+)", log).group(1)
print("prd-table at " + table + " (from ioreg's line in the serial log)")
gdb.execute("monitor xp /2wx " + table)
end

echo \n== 5. virtio-blk's program step, then its descriptor table\n
python break_at_function("drivers/src/virtio/block.rs", "program")
continue
finish
delete
python
import re
log = open("build/gdb-serial.log").read()
queue = re.search(r"VirtioBlock .*?queue-address=(0x[0-9a-f]+)", log).group(1)
print("virtqueue at " + queue + " (descriptors first, 16 bytes each)")
gdb.execute("monitor xp /6gx " + queue)
end
kill
