#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the binary fuzz targets (see cmake/PepitaFuzz.cmake):
well-formed conversations that reach deep into each parser, plus a few classic malformed ones.
The job-file seeds are plain TOML files kept as they are. Rerun after changing an input layout:
    tests/fuzz/make_seeds.py            (from the repository root)
Each fuzzer's header comment documents its input layout."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def write(target_dir, name, data):
    d = os.path.join(ROOT, target_dir)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


def place(ram, off, data):
    ram[off:off + len(data)] = data


def desc(addr, length, flags=0, nxt=0):  # struct virtq_desc
    return struct.pack("<QIHH", addr, length, flags, nxt)


NEXT, WRITE, INDIRECT = 1, 2, 4

# ---- fuzz_virtio_ring: qsize selector, flags, start index, then RAM (desc 0, avail 0x1000).
RING = "tests/virtio/fuzz/corpus/fuzz_virtio_ring"


def ring_input(descs, heads, blk_header=None, flags=0, extra=()):
    ram = bytearray(0x1420)
    place(ram, 0, b"".join(descs))
    place(ram, 0x1000, struct.pack("<HH", 0, len(heads)) +
          b"".join(struct.pack("<H", h) for h in heads))
    if blk_header is not None:
        place(ram, 0x1100, blk_header)
    for off, data in extra:
        place(ram, off, data)
    return bytes([3, flags, 0, 0]) + bytes(ram)  # qsize 8, start 0


def blk_hdr(rtype, sector):  # struct virtio_blk_outhdr
    return struct.pack("<IIQ", rtype, 0, sector)


write(RING, "read", ring_input(
    [desc(0x1100, 16, NEXT, 1), desc(0x1200, 512, NEXT | WRITE, 2), desc(0x1400, 1, WRITE)],
    [0], blk_hdr(0, 3)))
write(RING, "write", ring_input(
    [desc(0x1100, 16, NEXT, 1), desc(0x1200, 512, NEXT, 2), desc(0x1400, 1, WRITE)],
    [0], blk_hdr(1, 7)))
write(RING, "flush_and_get_id", ring_input(
    [desc(0x1100, 16, NEXT, 1), desc(0x1400, 1, WRITE), desc(0x1110, 16, NEXT, 3),
     desc(0x1200, 20, NEXT | WRITE, 4), desc(0x1401, 1, WRITE)],
    [0, 2], blk_hdr(4, 0), extra=[(0x1110, blk_hdr(8, 0))]))
write(RING, "discard", ring_input(
    [desc(0x1100, 16, NEXT, 1), desc(0x1200, 16, NEXT, 2), desc(0x1400, 1, WRITE)],
    [0], blk_hdr(11, 0), extra=[(0x1200, struct.pack("<QII", 8, 8, 0))]))
write(RING, "indirect", ring_input(
    [desc(0x1300, 48, INDIRECT)], [0], blk_hdr(0, 0), flags=1,
    extra=[(0x1300, desc(0x1100, 16, NEXT, 1) + desc(0x1200, 64, NEXT | WRITE, 2) +
            desc(0x1400, 1, WRITE))]))
write(RING, "loop", ring_input([desc(0x1100, 16, NEXT, 1), desc(0x1200, 16, NEXT, 0)],
                               [0], blk_hdr(0, 0)))

# ---- fuzz_virtio_mmio: RAM = the input's first data[0] * 64 bytes; then 7-byte register ops.
MMIO = "tests/virtio/fuzz/corpus/fuzz_virtio_mmio"


def mmio_input(ops, ram_extra=()):
    ram = bytearray(0x400)
    ram[0] = len(ram) // 64
    for off, data in ram_extra:
        place(ram, off, data)
    out = bytearray(ram)
    for op in ops:
        kind, reg, value = op
        out += struct.pack("<HBI", reg, 0x80 if kind == "r" else 0x00, value)
    return bytes(out)


def bring_up(queue_setup):
    ops = [("r", 0x000, 0), ("r", 0x004, 0), ("r", 0x008, 0), ("w", 0x070, 0),
           ("w", 0x070, 1), ("w", 0x070, 3), ("w", 0x014, 1), ("r", 0x010, 0),
           ("w", 0x024, 1), ("w", 0x020, 1), ("w", 0x070, 0xB), ("r", 0x070, 0)]
    ops += queue_setup
    ops += [("w", 0x070, 0xF), ("r", 0x100, 0), ("r", 0x0fc, 0)]
    return ops


def queue(q, num, desc_addr, avail, used):
    return [("w", 0x030, q), ("r", 0x034, 0), ("w", 0x038, num), ("w", 0x080, desc_addr),
            ("w", 0x084, 0), ("w", 0x090, avail), ("w", 0x094, 0), ("w", 0x0a0, used),
            ("w", 0x0a4, 0), ("w", 0x044, 1), ("r", 0x044, 0)]


tx_ram = [(0x100, desc(0x3c0, 6)), (0x200, struct.pack("<HHH", 0, 1, 0)), (0x3c0, b"hello\n")]
write(MMIO, "console_tx", mmio_input(
    bring_up(queue(1, 8, 0x100, 0x200, 0x300)) +
    [("w", 0x050, 1), ("r", 0x060, 0), ("w", 0x064, 1)], tx_ram))
rx_ram = [(0x100, desc(0x3c0, 32, WRITE)), (0x200, struct.pack("<HHH", 0, 1, 0))]
write(MMIO, "console_rx", mmio_input(
    bring_up(queue(0, 8, 0x100, 0x200, 0x300)) + [("w", 0x050, 0), ("r", 0x060, 0)], rx_ram))
write(MMIO, "reset_midway", mmio_input(
    bring_up(queue(1, 8, 0x100, 0x200, 0x300)) +
    [("w", 0x070, 0), ("r", 0x044, 0), ("w", 0x050, 1)], tx_ram))

# ---- fuzz_vhost_user: u16 RAM length, RAM, then records (attach byte, header, payload).
VHOST = "tests/virtio/fuzz/corpus/fuzz_vhost_user"
UVA = 0x7F0000000000
EVENTFD, MEMFD = 1, 2


def msg(request, payload=b"", attach=0, count=0, flags=1):
    return bytes([attach | (count << 2)]) + struct.pack("<III", request, flags, len(payload)) + \
        payload


def u64(v):
    return struct.pack("<Q", v)


def vstate(i, n):
    return struct.pack("<II", i, n)


def vhost_input(ram, records):
    return struct.pack("<H", len(ram)) + bytes(ram) + b"".join(records)


def handshake():
    return [msg(1), msg(2, u64((1 << 32) | (1 << 30))), msg(15),
            msg(16, u64((1 << 0) | (1 << 3) | (1 << 9) | (1 << 16))), msg(17), msg(3),
            msg(24, struct.pack("<III", 0, 60, 0) + bytes(60))]


def mem_table(size=0x10000):
    return msg(5, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", 0, size, UVA, 0),
               MEMFD, 1)


def start_vring(i, desc_off, avail_off, used_off, num=8):
    addr = struct.pack("<IIQQQQ", i, 0, UVA + desc_off, UVA + used_off, UVA + avail_off, 0)
    return [msg(8, vstate(i, num)), msg(10, vstate(i, 0)), msg(9, addr),
            msg(13, u64(i), EVENTFD, 1), msg(14, u64(i), EVENTFD, 1),
            msg(12, u64(i), EVENTFD, 1), msg(18, vstate(i, 1))]


blk_ram = bytearray(0x610)
place(blk_ram, 0x000, desc(0x300, 16, NEXT, 1) + desc(0x400, 512, NEXT | WRITE, 2) +
      desc(0x600, 1, WRITE))
place(blk_ram, 0x100, struct.pack("<HHH", 0, 1, 0))
place(blk_ram, 0x300, blk_hdr(0, 2))
write(VHOST, "qemu_blk_read", vhost_input(
    blk_ram, handshake() + [mem_table()] + start_vring(0, 0x000, 0x100, 0x200) +
    [msg(39, u64(0xF)), msg(40), msg(11, vstate(0, 0)), msg(39, u64(0)), msg(40)]))
write(VHOST, "need_reply", vhost_input(
    b"", handshake() + [msg(2, u64(1 << 32), flags=1 | 8), msg(8, vstate(1, 3), flags=1 | 8),
                        msg(99, flags=1 | 8), msg(40)]))
write(VHOST, "remap_running", vhost_input(
    blk_ram, handshake() + [mem_table()] + start_vring(1, 0x000, 0x100, 0x200) +
    [mem_table(0x8000), msg(9, struct.pack("<IIQQQQ", 1, 0, UVA, UVA + 0x200, UVA + 0x100, 0)),
     msg(4)]))
write(VHOST, "bad_version", vhost_input(b"", [msg(1, flags=2)]))

# ---- fuzz_ublk_io: geometry (4 bytes), depth descriptors, then the tag script.
UBLK = "tests/ublk/fuzz/corpus/fuzz_ublk_io"


def io_desc(op, sector, nr, flags=0):  # struct ublksrv_io_desc
    return struct.pack("<IIQQ", op | flags << 8, nr, sector, 0)


# 512-byte blocks, 64 KiB disk, 8 KiB buffers, depth 4.
write(UBLK, "write_read", bytes([0, 15, 15, 3]) +
      io_desc(1, 8, 16) + io_desc(0, 8, 16) + io_desc(0, 0, 8) + io_desc(2, 0, 0) +
      bytes([0, 1, 2, 3]))
write(UBLK, "discard_zeroes", bytes([0, 15, 15, 3]) +
      io_desc(1, 0, 16) + io_desc(3, 0, 8) + io_desc(5, 8, 8, flags=0x8) + io_desc(0, 0, 16) +
      bytes([0, 1, 2, 3]))
# 4 KiB blocks: misaligned, past the end, too long, unknown op, zoned op, out-of-range tag.
write(UBLK, "refusals", bytes([3, 3, 3, 7]) +
      io_desc(0, 1, 8) + io_desc(0, 32, 8) + io_desc(1, 0, 64) + io_desc(7, 0, 8) +
      io_desc(13, 0, 8) + io_desc(1, 2 ** 64 - 8, 16) + io_desc(0, 0, 0) + io_desc(4, 0, 8) +
      bytes(range(10)))
write(UBLK, "read_only", bytes([1, 7, 7, 0x81]) + io_desc(1, 0, 2) + io_desc(0, 0, 2) +
      bytes([0, 1, 0xF0]) + io_desc(3, 0, 2) + bytes([0]))

# ---- fuzz_transport_frame: 0xFF <type> <payload> is wrapped in a valid frame by the fuzzer.
FRAME = "tests/transport/fuzz/corpus/fuzz_transport_frame"
for t in range(1, 15):
    write(FRAME, "wrapped_type_%02d" % t, bytes([0xFF, t - 1]) + bytes(range(24)))
write(FRAME, "wrapped_mac", bytes([0xFF, 0x80 | 8]) + bytes(64))
write(FRAME, "raw_magic", struct.pack("<IBB", 0x31545050, 1, 9) + bytes(26))
