#pragma once
// ublk (userspace block driver) ABI: control and I/O command structs, ioctl-encoded command codes
// and flags, following Linux include/uapi/linux/ublk_cmd.h (6.12). Freestanding, header-only.
// Checked field by field against the kernel header in tests/abi/ublk_fidelity_test.cpp.

#include <stddef.h>
#include <stdint.h>

namespace pepita::abi::ublk {

// ioctl number encoding (asm-generic/ioctl.h): dir:2 | size:14 | type:8 | nr:8.
inline constexpr uint32_t IOC_WRITE = 1;
inline constexpr uint32_t IOC_READ = 2;
constexpr uint32_t ioc(uint32_t dir, uint32_t type, uint32_t nr, uint32_t size) {
  return (dir << 30) | (size << 16) | (type << 8) | nr;
}

/// Control command: sent as the 80-byte command area of an IORING_OP_URING_CMD SQE on
/// /dev/ublk-control.
struct CtrlCmd {
  uint32_t dev_id;    // target device; ~0u with ADD_DEV lets the kernel pick
  uint16_t queue_id;  // 0xffff when not for a queue
  uint16_t len;       // length of the buffer at `addr`
  uint64_t addr;      // user buffer (dev info, params)
  uint64_t data[1];   // inline argument
  uint16_t dev_path_len;
  uint16_t pad;
  uint32_t reserved;

  // The reference crate's UblkCtrlCmd (its new() is make()); its dev_id()/queue_id()/len()/addr()
  // accessors are the public fields and data() is data[0].
  /// A command for device `dev_id` (~0u with ADD_DEV lets the kernel pick), not for a queue
  /// (queue_id 0xffff, as ublksrv sends), every other field 0.
  static constexpr CtrlCmd make(uint32_t dev_id) { return with_queue(dev_id, 0xffff); }
  /// A command addressed to queue `queue_id` of device `dev_id` (GET_QUEUE_AFFINITY).
  static constexpr CtrlCmd with_queue(uint32_t dev_id, uint16_t queue_id) {
    CtrlCmd cmd{};
    cmd.dev_id = dev_id;
    cmd.queue_id = queue_id;
    return cmd;
  }
  /// Points the command at the user buffer the kernel reads or fills (dev info, params).
  constexpr void set_data(uint64_t buffer, uint16_t length) {
    addr = buffer;
    len = length;
  }
  /// The inline 64-bit argument (e.g. the server pid of START_DEV).
  constexpr void set_extra_data(uint64_t value) { data[0] = value; }
};
static_assert(sizeof(CtrlCmd) == 32);

/// Device description exchanged by ADD_DEV / GET_DEV_INFO.
struct CtrlDevInfo {
  uint16_t nr_hw_queues;
  uint16_t queue_depth;
  uint16_t state;
  uint16_t pad0;
  uint32_t max_io_buf_bytes;
  uint32_t dev_id;
  int32_t ublksrv_pid;
  uint32_t pad1;
  uint64_t flags;
  uint64_t ublksrv_flags;  // for the server's own use; the driver ignores it
  uint32_t owner_uid;
  uint32_t owner_gid;
  uint64_t reserved1;
  uint64_t reserved2;
};
static_assert(sizeof(CtrlDevInfo) == 64);

/// Per-tag I/O descriptor, read-only mmap of /dev/ublkcN filled by the driver.
struct IoDesc {
  uint32_t op_flags;  // op in bits 0-7, UBLK_IO_F_* in bits 8-31
  union {
    uint32_t nr_sectors;
    uint32_t nr_zones;  // for IO_OP_REPORT_ZONES
  };
  uint64_t start_sector;
  uint64_t addr;  // server buffer address for this tag

  // The reference crate's UblkIoDesc (its new() is make(); defined below the IO_OP_* / IO_F_*
  // tables). Its nr_sectors()/start_sector()/addr()/op_flags() accessors are the public fields.
  /// A descriptor as the driver writes it: op in bits 0-7, no flags.
  static constexpr IoDesc make(uint8_t op, uint64_t start_sector, uint32_t nr_sectors);
  /// The IO_OP_* code (bits 0-7 of op_flags).
  constexpr uint8_t op() const { return static_cast<uint8_t>(op_flags & 0xff); }
  /// The IO_F_* bits, in place (so `flags() & IO_F_FUA` tests FUA).
  constexpr uint32_t flags() const { return op_flags & ~0xffu; }
  constexpr bool is_read() const;
  constexpr bool is_write() const;
  constexpr bool is_flush() const;
  constexpr bool is_fua() const;
  constexpr void set_addr(uint64_t buffer) { addr = buffer; }
  /// Byte position and length of the request on the device (512-byte sectors).
  constexpr uint64_t byte_offset() const { return start_sector << 9; }
  constexpr uint64_t byte_len() const { return static_cast<uint64_t>(nr_sectors) << 9; }
};
static_assert(sizeof(IoDesc) == 24);

constexpr uint8_t io_desc_op(const IoDesc& desc) {
  return static_cast<uint8_t>(desc.op_flags & 0xff);
}
constexpr uint32_t io_desc_flags(const IoDesc& desc) { return desc.op_flags >> 8; }

/// I/O command: FETCH_REQ / COMMIT_AND_FETCH_REQ / NEED_GET_DATA on /dev/ublkcN.
struct IoCmd {
  uint16_t q_id;
  uint16_t tag;
  int32_t result;  // valid for COMMIT_AND_FETCH_REQ only
  union {
    uint64_t addr;
    uint64_t zone_append_lba;
  };

  // The reference crate's UblkIoCmd (its new() is make()); q_id()/tag()/result()/addr() are the
  // public fields.
  /// The FETCH_REQ form for tag `tag` of queue `q_id`; set_addr() gives it the tag's buffer.
  static constexpr IoCmd make(uint16_t q_id, uint16_t tag) { return completed(q_id, tag, 0); }
  /// The COMMIT_AND_FETCH_REQ form: `result` is bytes done or a negative errno for the request.
  static constexpr IoCmd completed(uint16_t q_id, uint16_t tag, int32_t result) {
    IoCmd cmd{};
    cmd.q_id = q_id;
    cmd.tag = tag;
    cmd.result = result;
    return cmd;
  }
  constexpr void set_result(int32_t value) { result = value; }
  constexpr void set_addr(uint64_t buffer) { addr = buffer; }
  constexpr bool is_success() const { return result >= 0; }
};
static_assert(sizeof(IoCmd) == 16);

struct ParamBasic {
  uint32_t attrs;
  uint8_t logical_bs_shift;
  uint8_t physical_bs_shift;
  uint8_t io_opt_shift;
  uint8_t io_min_shift;
  uint32_t max_sectors;
  uint32_t chunk_sectors;
  uint64_t dev_sectors;
  uint64_t virt_boundary_mask;
};

struct ParamDiscard {
  uint32_t discard_alignment;
  uint32_t discard_granularity;
  uint32_t max_discard_sectors;
  uint32_t max_write_zeroes_sectors;
  uint16_t max_discard_segments;
  uint16_t reserved0;
};

struct ParamDevt {
  uint32_t char_major;
  uint32_t char_minor;
  uint32_t disk_major;
  uint32_t disk_minor;
};

struct ParamZoned {
  uint32_t max_open_zones;
  uint32_t max_active_zones;
  uint32_t max_zone_append_sectors;
  uint8_t reserved[20];
};

struct Params {
  uint32_t len;    // sizeof(Params) the server understands
  uint32_t types;  // PARAM_TYPE_* present
  ParamBasic basic;
  ParamDiscard discard;
  ParamDevt devt;
  ParamZoned zoned;
};

// Raw command numbers (legacy encoding) and their ioctl-encoded forms.
inline constexpr uint32_t CMD_GET_QUEUE_AFFINITY = 0x01;
inline constexpr uint32_t CMD_GET_DEV_INFO = 0x02;
inline constexpr uint32_t CMD_ADD_DEV = 0x04;
inline constexpr uint32_t CMD_DEL_DEV = 0x05;
inline constexpr uint32_t CMD_START_DEV = 0x06;
inline constexpr uint32_t CMD_STOP_DEV = 0x07;
inline constexpr uint32_t CMD_SET_PARAMS = 0x08;
inline constexpr uint32_t CMD_GET_PARAMS = 0x09;
inline constexpr uint32_t CMD_START_USER_RECOVERY = 0x10;
inline constexpr uint32_t CMD_END_USER_RECOVERY = 0x11;
inline constexpr uint32_t CMD_GET_DEV_INFO2 = 0x12;
inline constexpr uint32_t CMD_GET_FEATURES = 0x13;
inline constexpr uint32_t CMD_DEL_DEV_ASYNC = 0x14;

inline constexpr uint32_t IOCTL_TYPE = 'u';
inline constexpr uint32_t U_CMD_GET_QUEUE_AFFINITY =
    ioc(IOC_READ, IOCTL_TYPE, CMD_GET_QUEUE_AFFINITY, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_GET_DEV_INFO =
    ioc(IOC_READ, IOCTL_TYPE, CMD_GET_DEV_INFO, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_ADD_DEV =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_ADD_DEV, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_DEL_DEV =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_DEL_DEV, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_START_DEV =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_START_DEV, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_STOP_DEV =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_STOP_DEV, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_SET_PARAMS =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_SET_PARAMS, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_GET_PARAMS =
    ioc(IOC_READ, IOCTL_TYPE, CMD_GET_PARAMS, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_START_USER_RECOVERY =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_START_USER_RECOVERY, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_END_USER_RECOVERY =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, CMD_END_USER_RECOVERY, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_GET_DEV_INFO2 =
    ioc(IOC_READ, IOCTL_TYPE, CMD_GET_DEV_INFO2, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_GET_FEATURES =
    ioc(IOC_READ, IOCTL_TYPE, CMD_GET_FEATURES, sizeof(CtrlCmd));
inline constexpr uint32_t U_CMD_DEL_DEV_ASYNC =
    ioc(IOC_READ, IOCTL_TYPE, CMD_DEL_DEV_ASYNC, sizeof(CtrlCmd));
inline constexpr uint32_t FEATURES_LEN = 8;

inline constexpr uint32_t IO_FETCH_REQ = 0x20;
inline constexpr uint32_t IO_COMMIT_AND_FETCH_REQ = 0x21;
inline constexpr uint32_t IO_NEED_GET_DATA = 0x22;
inline constexpr uint32_t U_IO_FETCH_REQ =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, IO_FETCH_REQ, sizeof(IoCmd));
inline constexpr uint32_t U_IO_COMMIT_AND_FETCH_REQ =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, IO_COMMIT_AND_FETCH_REQ, sizeof(IoCmd));
inline constexpr uint32_t U_IO_NEED_GET_DATA =
    ioc(IOC_READ | IOC_WRITE, IOCTL_TYPE, IO_NEED_GET_DATA, sizeof(IoCmd));

inline constexpr int32_t IO_RES_OK = 0;
inline constexpr int32_t IO_RES_NEED_GET_DATA = 1;
inline constexpr int32_t IO_RES_ABORT = -19;  // -ENODEV

// Layout of the I/O buffer space of /dev/ublkcN for UBLK_F_USER_COPY (pread/pwrite offsets).
inline constexpr uint64_t SRV_CMD_BUF_OFFSET = 0;
inline constexpr uint64_t SRV_IO_BUF_OFFSET = 0x80000000ull;
inline constexpr uint32_t MAX_QUEUE_DEPTH = 4096;
inline constexpr uint32_t IO_BUF_OFF = 0;
inline constexpr uint32_t IO_BUF_BITS = 25;
inline constexpr uint64_t IO_BUF_BITS_MASK = (1ull << IO_BUF_BITS) - 1;
inline constexpr uint32_t TAG_OFF = IO_BUF_BITS;
inline constexpr uint32_t TAG_BITS = 16;
inline constexpr uint64_t TAG_BITS_MASK = (1ull << TAG_BITS) - 1;
inline constexpr uint32_t QID_OFF = TAG_OFF + TAG_BITS;
inline constexpr uint32_t QID_BITS = 12;
inline constexpr uint64_t QID_BITS_MASK = (1ull << QID_BITS) - 1;
inline constexpr uint32_t MAX_NR_QUEUES = 1u << QID_BITS;
inline constexpr uint32_t SRV_IO_BUF_TOTAL_BITS = QID_OFF + QID_BITS;
inline constexpr uint64_t SRV_IO_BUF_TOTAL_SIZE = 1ull << SRV_IO_BUF_TOTAL_BITS;

/// pread/pwrite offset of (queue, tag, byte) in /dev/ublkcN under UBLK_F_USER_COPY.
constexpr uint64_t user_copy_offset(uint16_t queue, uint16_t tag, uint32_t byte) {
  return SRV_IO_BUF_OFFSET + (static_cast<uint64_t>(queue) << QID_OFF) +
         (static_cast<uint64_t>(tag) << TAG_OFF) + byte;
}

inline constexpr uint64_t F_SUPPORT_ZERO_COPY = 1ull << 0;
inline constexpr uint64_t F_URING_CMD_COMP_IN_TASK = 1ull << 1;
inline constexpr uint64_t F_NEED_GET_DATA = 1ull << 2;
inline constexpr uint64_t F_USER_RECOVERY = 1ull << 3;
inline constexpr uint64_t F_USER_RECOVERY_REISSUE = 1ull << 4;
inline constexpr uint64_t F_UNPRIVILEGED_DEV = 1ull << 5;
inline constexpr uint64_t F_CMD_IOCTL_ENCODE = 1ull << 6;
inline constexpr uint64_t F_USER_COPY = 1ull << 7;
inline constexpr uint64_t F_ZONED = 1ull << 8;

inline constexpr uint16_t S_DEV_DEAD = 0;
inline constexpr uint16_t S_DEV_LIVE = 1;
inline constexpr uint16_t S_DEV_QUIESCED = 2;

inline constexpr uint8_t IO_OP_READ = 0;
inline constexpr uint8_t IO_OP_WRITE = 1;
inline constexpr uint8_t IO_OP_FLUSH = 2;
inline constexpr uint8_t IO_OP_DISCARD = 3;
inline constexpr uint8_t IO_OP_WRITE_SAME = 4;
inline constexpr uint8_t IO_OP_WRITE_ZEROES = 5;
inline constexpr uint8_t IO_OP_ZONE_OPEN = 10;
inline constexpr uint8_t IO_OP_ZONE_CLOSE = 11;
inline constexpr uint8_t IO_OP_ZONE_FINISH = 12;
inline constexpr uint8_t IO_OP_ZONE_APPEND = 13;
inline constexpr uint8_t IO_OP_ZONE_RESET_ALL = 14;
inline constexpr uint8_t IO_OP_ZONE_RESET = 15;
inline constexpr uint8_t IO_OP_REPORT_ZONES = 18;

inline constexpr uint32_t IO_F_FAILFAST_DEV = 1u << 8;
inline constexpr uint32_t IO_F_FAILFAST_TRANSPORT = 1u << 9;
inline constexpr uint32_t IO_F_FAILFAST_DRIVER = 1u << 10;
inline constexpr uint32_t IO_F_META = 1u << 11;
inline constexpr uint32_t IO_F_FUA = 1u << 13;
inline constexpr uint32_t IO_F_NOUNMAP = 1u << 15;
inline constexpr uint32_t IO_F_SWAP = 1u << 16;

constexpr IoDesc IoDesc::make(uint8_t op, uint64_t start_sector, uint32_t nr_sectors) {
  IoDesc desc{};
  desc.op_flags = op;
  desc.nr_sectors = nr_sectors;
  desc.start_sector = start_sector;
  return desc;
}
constexpr bool IoDesc::is_read() const { return op() == IO_OP_READ; }
constexpr bool IoDesc::is_write() const { return op() == IO_OP_WRITE; }
constexpr bool IoDesc::is_flush() const { return op() == IO_OP_FLUSH; }
constexpr bool IoDesc::is_fua() const { return (op_flags & IO_F_FUA) != 0; }

inline constexpr uint32_t ATTR_READ_ONLY = 1u << 0;
inline constexpr uint32_t ATTR_ROTATIONAL = 1u << 1;
inline constexpr uint32_t ATTR_VOLATILE_CACHE = 1u << 2;
inline constexpr uint32_t ATTR_FUA = 1u << 3;

inline constexpr uint32_t PARAM_TYPE_BASIC = 1u << 0;
inline constexpr uint32_t PARAM_TYPE_DISCARD = 1u << 1;
inline constexpr uint32_t PARAM_TYPE_DEVT = 1u << 2;
inline constexpr uint32_t PARAM_TYPE_ZONED = 1u << 3;

}  // namespace pepita::abi::ublk
