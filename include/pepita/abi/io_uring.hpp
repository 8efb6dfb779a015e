#pragma once
// io_uring kernel ABI: SQE/CQE layouts, setup parameters, ring offsets, opcodes and every flag of
// Linux 6.12's include/uapi/linux/io_uring.h, with the opcodes up to Linux 6.18's IORING_OP_LAST.
// Freestanding. Names drop the kernel's IORING_/IOSQE_ prefixes (the kernel's are macros) and live
// in one namespace per flag family.

#include <stddef.h>
#include <stdint.h>

namespace pepita::abi {

/// struct __kernel_timespec: the 64-bit timespec io_uring timeouts and waits take.
struct KernelTimespec {
  int64_t tv_sec;
  long long tv_nsec;
};

/// struct io_uring_sqe: one 64-byte submission entry. Unions mirror the kernel's so that every
/// opcode's field name reads the same as in the man pages.
struct Sqe {
  uint8_t opcode;   // an io_uring::Op
  uint8_t flags;    // sqe_flags::*
  uint16_t ioprio;  // also accept/recv/send flags
  int32_t fd;
  union {
    uint64_t off;
    uint64_t addr2;
    __extension__ struct {
      uint32_t cmd_op;
      uint32_t pad1;
    };
  };
  union {
    uint64_t addr;
    uint64_t splice_off_in;
    __extension__ struct {
      uint32_t level;
      uint32_t optname;
    };
  };
  uint32_t len;
  union {
    uint32_t rw_flags;
    uint32_t fsync_flags;
    uint16_t poll_events;
    uint32_t poll32_events;
    uint32_t sync_range_flags;
    uint32_t msg_flags;
    uint32_t timeout_flags;
    uint32_t accept_flags;
    uint32_t cancel_flags;
    uint32_t open_flags;
    uint32_t statx_flags;
    uint32_t fadvise_advice;
    uint32_t splice_flags;
    uint32_t rename_flags;
    uint32_t unlink_flags;
    uint32_t hardlink_flags;
    uint32_t xattr_flags;
    uint32_t msg_ring_flags;
    uint32_t uring_cmd_flags;
    uint32_t waitid_flags;
    uint32_t futex_flags;
    uint32_t install_fd_flags;
    uint32_t nop_flags;
    uint32_t pipe_flags;
  };
  uint64_t user_data;
  union {
    uint16_t buf_index;
    uint16_t buf_group;
  } __attribute__((packed));
  uint16_t personality;
  union {
    int32_t splice_fd_in;
    uint32_t file_index;
    uint32_t zcrx_ifq_idx;
    uint32_t optlen;
    __extension__ struct {
      uint16_t addr_len;
      uint16_t pad3[1];
    };
  };
  union {
    __extension__ struct {
      uint64_t addr3;
      uint64_t pad2[1];
    };
    uint64_t optval;
  };

  // The reference crate's constructors and predicates (its IoUringSqe), defined below the opcode
  // and flag tables. Each factory returns an entry with every other field zero, ready to copy
  // into a ring slot:  *ring.get_sqe() = abi::Sqe::read(fd, buf, len, offset, /*user_data=*/7);
  /// IORING_OP_NOP: completes with res 0 and the given user_data.
  static constexpr Sqe nop(uint64_t user_data);
  /// IORING_OP_URING_CMD on `fd` with the driver's command code `cmd_op` (ublk's UBLK_U_*); the
  /// command payload goes in the 80-byte area of a 128-byte entry (Sqe128::cmd).
  static constexpr Sqe uring_cmd(int32_t fd, uint32_t cmd_op, uint64_t user_data);
  /// IORING_OP_READ: pread(fd, buf, len, offset); offset ~0ull reads at the file position.
  static constexpr Sqe read(int32_t fd, uint64_t buf, uint32_t len, uint64_t offset,
                            uint64_t user_data);
  /// IORING_OP_WRITE: pwrite(fd, buf, len, offset).
  static constexpr Sqe write(int32_t fd, uint64_t buf, uint32_t len, uint64_t offset,
                             uint64_t user_data);
  /// IOSQE_ASYNC: always punt to an io-wq worker.
  constexpr void set_async();
  /// IOSQE_IO_LINK: the next entry starts only after this one succeeded.
  constexpr void set_link();
  /// IOSQE_FIXED_FILE: `fd` is an index into the ring's registered files.
  constexpr void set_fixed_file();
  constexpr bool is_uring_cmd() const;
  constexpr bool is_nop() const;
};
static_assert(sizeof(Sqe) == 64);

/// Size of the command area of an IORING_OP_URING_CMD entry on a ring set up with
/// setup::SQE128: it starts at byte 48 (where addr3 sits in the 64-byte form) and runs to 128.
inline constexpr size_t URING_CMD_AREA_SIZE = 80;

/// The 128-byte SQE of a setup::SQE128 ring. The first 48 bytes are Sqe's; `cmd` overlays Sqe's
/// addr3/pad2 and the 64 extension bytes. Only IORING_OP_URING_CMD (ublk, NVMe passthrough) reads
/// past byte 64; any other opcode on such a ring uses the Sqe view of the same slot.
struct Sqe128 {
  uint8_t opcode;
  uint8_t flags;
  uint16_t ioprio;
  int32_t fd;
  union {
    uint64_t off;
    uint64_t addr2;
    __extension__ struct {
      uint32_t cmd_op;
      uint32_t pad1;
    };
  };
  union {
    uint64_t addr;
    uint64_t splice_off_in;
    __extension__ struct {
      uint32_t level;
      uint32_t optname;
    };
  };
  uint32_t len;
  union {
    uint32_t rw_flags;
    uint32_t uring_cmd_flags;
  };
  uint64_t user_data;
  union {
    uint16_t buf_index;
    uint16_t buf_group;
  } __attribute__((packed));
  uint16_t personality;
  union {
    int32_t splice_fd_in;
    uint32_t file_index;
  };
  uint8_t cmd[URING_CMD_AREA_SIZE];
};
static_assert(sizeof(Sqe128) == 128);
static_assert(offsetof(Sqe128, cmd) == 48, "the uring_cmd area starts where Sqe::addr3 does");
static_assert(offsetof(Sqe128, cmd) == offsetof(Sqe, addr3));
static_assert(offsetof(Sqe128, user_data) == offsetof(Sqe, user_data));

/// IORING_FILE_INDEX_ALLOC: let the kernel pick a free direct-descriptor slot.
inline constexpr uint32_t FILE_INDEX_ALLOC = ~0u;

/// sqe->flags (enum io_uring_sqe_flags_bit and IOSQE_*).
namespace sqe_flags {
inline constexpr uint8_t FIXED_FILE_BIT = 0;
inline constexpr uint8_t IO_DRAIN_BIT = 1;
inline constexpr uint8_t IO_LINK_BIT = 2;
inline constexpr uint8_t IO_HARDLINK_BIT = 3;
inline constexpr uint8_t ASYNC_BIT = 4;
inline constexpr uint8_t BUFFER_SELECT_BIT = 5;
inline constexpr uint8_t CQE_SKIP_SUCCESS_BIT = 6;
inline constexpr uint8_t FIXED_FILE = 1u << FIXED_FILE_BIT;        // fd is a registered index
inline constexpr uint8_t IO_DRAIN = 1u << IO_DRAIN_BIT;            // issue after inflight IO
inline constexpr uint8_t IO_LINK = 1u << IO_LINK_BIT;              // next SQE waits for this
inline constexpr uint8_t IO_HARDLINK = 1u << IO_HARDLINK_BIT;      // link that survives errors
inline constexpr uint8_t ASYNC = 1u << ASYNC_BIT;                  // always punt to io-wq
inline constexpr uint8_t BUFFER_SELECT = 1u << BUFFER_SELECT_BIT;  // use a provided buffer
inline constexpr uint8_t CQE_SKIP_SUCCESS = 1u << CQE_SKIP_SUCCESS_BIT;  // no CQE on success
}  // namespace sqe_flags

/// io_uring_setup() flags (IORING_SETUP_*).
namespace setup {
inline constexpr uint32_t IOPOLL = 1u << 0;
inline constexpr uint32_t SQPOLL = 1u << 1;
inline constexpr uint32_t SQ_AFF = 1u << 2;
inline constexpr uint32_t CQSIZE = 1u << 3;
inline constexpr uint32_t CLAMP = 1u << 4;
inline constexpr uint32_t ATTACH_WQ = 1u << 5;
inline constexpr uint32_t R_DISABLED = 1u << 6;
inline constexpr uint32_t SUBMIT_ALL = 1u << 7;
inline constexpr uint32_t COOP_TASKRUN = 1u << 8;
inline constexpr uint32_t TASKRUN_FLAG = 1u << 9;
inline constexpr uint32_t SQE128 = 1u << 10;
inline constexpr uint32_t CQE32 = 1u << 11;
inline constexpr uint32_t SINGLE_ISSUER = 1u << 12;
inline constexpr uint32_t DEFER_TASKRUN = 1u << 13;
inline constexpr uint32_t NO_MMAP = 1u << 14;
inline constexpr uint32_t REGISTERED_FD_ONLY = 1u << 15;
inline constexpr uint32_t NO_SQARRAY = 1u << 16;
}  // namespace setup

/// enum io_uring_op, in kernel order.
enum class Op : uint8_t {
  Nop,
  Readv,
  Writev,
  Fsync,
  ReadFixed,
  WriteFixed,
  PollAdd,
  PollRemove,
  SyncFileRange,
  Sendmsg,
  Recvmsg,
  Timeout,
  TimeoutRemove,
  Accept,
  AsyncCancel,
  LinkTimeout,
  Connect,
  Fallocate,
  Openat,
  Close,
  FilesUpdate,
  Statx,
  Read,
  Write,
  Fadvise,
  Madvise,
  Send,
  Recv,
  Openat2,
  EpollCtl,
  Splice,
  ProvideBuffers,
  RemoveBuffers,
  Tee,
  Shutdown,
  Renameat,
  Unlinkat,
  Mkdirat,
  Symlinkat,
  Linkat,
  MsgRing,
  Fsetxattr,
  Setxattr,
  Fgetxattr,
  Getxattr,
  Socket,
  UringCmd,
  SendZc,
  SendmsgZc,
  ReadMultishot,
  Waitid,
  FutexWait,
  FutexWake,
  FutexWaitv,
  FixedFdInstall,
  Ftruncate,
  Bind,
  Listen,
  RecvZc,       // 6.15: zero-copy receive into a registered zcrx interface queue
  EpollWait,    // 6.15
  ReadvFixed,   // 6.15: readv from registered buffers
  WritevFixed,  // 6.15
  Pipe,         // 6.16: pipe2(2), optionally into direct descriptors
  Last,         // one past the highest opcode this header knows (Linux 6.18's IORING_OP_LAST)
};

/// sqe->uring_cmd_flags.
namespace uring_cmd_flags {
inline constexpr uint32_t FIXED = 1u << 0;
inline constexpr uint32_t MASK = FIXED;
}  // namespace uring_cmd_flags

/// sqe->fsync_flags.
namespace fsync_flags {
inline constexpr uint32_t DATASYNC = 1u << 0;
}  // namespace fsync_flags

/// sqe->timeout_flags.
namespace timeout_flags {
inline constexpr uint32_t ABS = 1u << 0;
inline constexpr uint32_t UPDATE = 1u << 1;
inline constexpr uint32_t BOOTTIME = 1u << 2;
inline constexpr uint32_t REALTIME = 1u << 3;
inline constexpr uint32_t LINK_TIMEOUT_UPDATE = 1u << 4;
inline constexpr uint32_t ETIME_SUCCESS = 1u << 5;
inline constexpr uint32_t MULTISHOT = 1u << 6;
inline constexpr uint32_t CLOCK_MASK = BOOTTIME | REALTIME;
inline constexpr uint32_t UPDATE_MASK = UPDATE | LINK_TIMEOUT_UPDATE;
}  // namespace timeout_flags

/// sqe->splice_flags extension of splice(2) flags: splice_fd_in is a registered file.
inline constexpr uint32_t SPLICE_FD_IN_FIXED = 1u << 31;

/// POLL_ADD command flags, carried in sqe->len.
namespace poll_flags {
inline constexpr uint32_t ADD_MULTI = 1u << 0;
inline constexpr uint32_t UPDATE_EVENTS = 1u << 1;
inline constexpr uint32_t UPDATE_USER_DATA = 1u << 2;
inline constexpr uint32_t ADD_LEVEL = 1u << 3;
}  // namespace poll_flags

/// ASYNC_CANCEL flags (sqe->cancel_flags).
namespace cancel_flags {
inline constexpr uint32_t ALL = 1u << 0;
inline constexpr uint32_t FD = 1u << 1;
inline constexpr uint32_t ANY = 1u << 2;
inline constexpr uint32_t FD_FIXED = 1u << 3;
inline constexpr uint32_t USERDATA = 1u << 4;
inline constexpr uint32_t OP = 1u << 5;
}  // namespace cancel_flags

/// send/recv flags, carried in sqe->ioprio.
namespace recvsend_flags {
inline constexpr uint16_t POLL_FIRST = 1u << 0;
inline constexpr uint16_t RECV_MULTISHOT = 1u << 1;
inline constexpr uint16_t FIXED_BUF = 1u << 2;
inline constexpr uint16_t SEND_ZC_REPORT_USAGE = 1u << 3;
inline constexpr uint16_t BUNDLE = 1u << 4;
}  // namespace recvsend_flags

/// cqe->res bit of a zero-copy notification when SEND_ZC_REPORT_USAGE was asked.
inline constexpr uint32_t NOTIF_USAGE_ZC_COPIED = 1u << 31;

/// accept flags, carried in sqe->ioprio.
namespace accept_flags {
inline constexpr uint16_t MULTISHOT = 1u << 0;
inline constexpr uint16_t DONTWAIT = 1u << 1;
inline constexpr uint16_t POLL_FIRST = 1u << 2;
}  // namespace accept_flags

/// IORING_OP_MSG_RING command types (sqe->addr) and flags (sqe->msg_ring_flags).
namespace msg_ring {
inline constexpr uint64_t DATA = 0;     // pass sqe->len as res and sqe->off as user_data
inline constexpr uint64_t SEND_FD = 1;  // send a registered fd to another ring
inline constexpr uint32_t CQE_SKIP = 1u << 0;
inline constexpr uint32_t FLAGS_PASS = 1u << 1;
}  // namespace msg_ring

/// futex2 flags of IORING_OP_FUTEX_* (sqe->fd) and of struct futex_waitv (linux/futex.h).
namespace futex2 {
inline constexpr uint32_t SIZE_U8 = 0x00;
inline constexpr uint32_t SIZE_U16 = 0x01;
inline constexpr uint32_t SIZE_U32 = 0x02;
inline constexpr uint32_t SIZE_U64 = 0x03;
inline constexpr uint32_t NUMA = 0x04;
inline constexpr uint32_t PRIVATE = 128;
inline constexpr uint64_t BITSET_MATCH_ANY = 0xffffffffu;  // FUTEX_BITSET_MATCH_ANY
}  // namespace futex2

/// struct futex_waitv: one futex of an IORING_OP_FUTEX_WAITV vector.
struct FutexWaitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;  // futex2::*
  uint32_t reserved;
};

/// IORING_OP_FIXED_FD_INSTALL flags.
inline constexpr uint32_t FIXED_FD_NO_CLOEXEC = 1u << 0;
/// IORING_OP_NOP flags: complete with the value in sqe->len instead of 0.
inline constexpr uint32_t NOP_INJECT_RESULT = 1u << 0;

/// struct io_uring_cqe: one 16-byte completion.
struct Cqe {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;  // cqe_flags::*

  // The reference crate's predicates (its IoUringCqe). res >= 0 is the operation's result (bytes
  // moved, a new fd, 0), res < 0 a negative errno.
  constexpr bool is_success() const { return res >= 0; }
  constexpr bool is_error() const { return res < 0; }
  /// The positive errno of a failed operation, 0 on success. (The crate's `errno()`: errno is a
  /// macro of <errno.h> in C++, so the name cannot be used.)
  constexpr int32_t error_number() const { return res < 0 ? -res : 0; }
  /// IORING_CQE_F_MORE: a multishot request will post more completions.
  constexpr bool has_more() const;
};
static_assert(sizeof(Cqe) == 16);

/// The 32-byte CQE of a setup::CQE32 ring; big_cqe carries uring_cmd's second result.
struct Cqe32 {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
  uint64_t big_cqe[2];
};
static_assert(sizeof(Cqe32) == 32);

/// cqe->flags.
namespace cqe_flags {
inline constexpr uint32_t BUFFER = 1u << 0;
inline constexpr uint32_t MORE = 1u << 1;  // the SQE will post more CQEs (multishot)
inline constexpr uint32_t SOCK_NONEMPTY = 1u << 2;
inline constexpr uint32_t NOTIF = 1u << 3;
inline constexpr uint32_t BUF_MORE = 1u << 4;
inline constexpr uint32_t BUFFER_SHIFT = 16;
}  // namespace cqe_flags

constexpr Sqe Sqe::nop(uint64_t user_data) {
  Sqe sqe{};
  sqe.opcode = static_cast<uint8_t>(Op::Nop);
  sqe.fd = -1;
  sqe.user_data = user_data;
  return sqe;
}
constexpr Sqe Sqe::uring_cmd(int32_t fd, uint32_t cmd_op, uint64_t user_data) {
  Sqe sqe{};
  sqe.opcode = static_cast<uint8_t>(Op::UringCmd);
  sqe.fd = fd;
  sqe.cmd_op = cmd_op;  // the kernel reads it at byte 8 (io_uring_sqe.cmd_op)
  sqe.user_data = user_data;
  return sqe;
}
constexpr Sqe Sqe::read(int32_t fd, uint64_t buf, uint32_t len, uint64_t offset,
                        uint64_t user_data) {
  Sqe sqe{};
  sqe.opcode = static_cast<uint8_t>(Op::Read);
  sqe.fd = fd;
  sqe.off = offset;
  sqe.addr = buf;
  sqe.len = len;
  sqe.user_data = user_data;
  return sqe;
}
constexpr Sqe Sqe::write(int32_t fd, uint64_t buf, uint32_t len, uint64_t offset,
                         uint64_t user_data) {
  Sqe sqe = read(fd, buf, len, offset, user_data);
  sqe.opcode = static_cast<uint8_t>(Op::Write);
  return sqe;
}
constexpr void Sqe::set_async() { flags = static_cast<uint8_t>(flags | sqe_flags::ASYNC); }
constexpr void Sqe::set_link() { flags = static_cast<uint8_t>(flags | sqe_flags::IO_LINK); }
constexpr void Sqe::set_fixed_file() {
  flags = static_cast<uint8_t>(flags | sqe_flags::FIXED_FILE);
}
constexpr bool Sqe::is_uring_cmd() const { return opcode == static_cast<uint8_t>(Op::UringCmd); }
constexpr bool Sqe::is_nop() const { return opcode == static_cast<uint8_t>(Op::Nop); }
constexpr bool Cqe::has_more() const { return (flags & cqe_flags::MORE) != 0; }

/// Magic mmap offsets of the rings (IORING_OFF_*).
namespace mmap_off {
inline constexpr uint64_t SQ_RING = 0ull;
inline constexpr uint64_t CQ_RING = 0x8000000ull;
inline constexpr uint64_t SQES = 0x10000000ull;
inline constexpr uint64_t PBUF_RING = 0x80000000ull;
inline constexpr uint64_t PBUF_SHIFT = 16;
inline constexpr uint64_t MMAP_MASK = 0xf8000000ull;
}  // namespace mmap_off

/// struct io_sqring_offsets: where each SQ ring field lives inside the SQ ring mapping.
struct SqRingOffsets {
  uint32_t head;
  uint32_t tail;
  uint32_t ring_mask;
  uint32_t ring_entries;
  uint32_t flags;
  uint32_t dropped;
  uint32_t array;
  uint32_t resv1;
  uint64_t user_addr;
};

/// sq_ring->flags.
namespace sq_flags {
inline constexpr uint32_t NEED_WAKEUP = 1u << 0;  // SQPOLL thread sleeps; enter with SQ_WAKEUP
inline constexpr uint32_t CQ_OVERFLOW = 1u << 1;  // kernel holds overflowed CQEs; enter to flush
inline constexpr uint32_t TASKRUN = 1u << 2;
}  // namespace sq_flags

/// struct io_cqring_offsets.
struct CqRingOffsets {
  uint32_t head;
  uint32_t tail;
  uint32_t ring_mask;
  uint32_t ring_entries;
  uint32_t overflow;
  uint32_t cqes;
  uint32_t flags;
  uint32_t resv1;
  uint64_t user_addr;
};

/// cq_ring->flags.
inline constexpr uint32_t CQ_EVENTFD_DISABLED = 1u << 0;

/// io_uring_enter() flags (IORING_ENTER_*).
namespace enter {
inline constexpr uint32_t GETEVENTS = 1u << 0;
inline constexpr uint32_t SQ_WAKEUP = 1u << 1;
inline constexpr uint32_t SQ_WAIT = 1u << 2;
inline constexpr uint32_t EXT_ARG = 1u << 3;
inline constexpr uint32_t REGISTERED_RING = 1u << 4;
inline constexpr uint32_t ABS_TIMER = 1u << 5;
}  // namespace enter

/// struct io_uring_params: in/out argument of io_uring_setup().
struct Params {
  uint32_t sq_entries;
  uint32_t cq_entries;
  uint32_t flags;
  uint32_t sq_thread_cpu;
  uint32_t sq_thread_idle;  // milliseconds before the SQPOLL thread sleeps
  uint32_t features;
  uint32_t wq_fd;
  uint32_t resv[3];
  SqRingOffsets sq_off;
  CqRingOffsets cq_off;
};

/// io_uring_params->features (IORING_FEAT_*).
namespace feat {
inline constexpr uint32_t SINGLE_MMAP = 1u << 0;
inline constexpr uint32_t NODROP = 1u << 1;
inline constexpr uint32_t SUBMIT_STABLE = 1u << 2;
inline constexpr uint32_t RW_CUR_POS = 1u << 3;
inline constexpr uint32_t CUR_PERSONALITY = 1u << 4;
inline constexpr uint32_t FAST_POLL = 1u << 5;
inline constexpr uint32_t POLL_32BITS = 1u << 6;
inline constexpr uint32_t SQPOLL_NONFIXED = 1u << 7;
inline constexpr uint32_t EXT_ARG = 1u << 8;
inline constexpr uint32_t NATIVE_WORKERS = 1u << 9;
inline constexpr uint32_t RSRC_TAGS = 1u << 10;
inline constexpr uint32_t CQE_SKIP = 1u << 11;
inline constexpr uint32_t LINKED_FILE = 1u << 12;
inline constexpr uint32_t REG_REG_RING = 1u << 13;
inline constexpr uint32_t RECVSEND_BUNDLE = 1u << 14;
inline constexpr uint32_t MIN_TIMEOUT = 1u << 15;
}  // namespace feat

/// enum io_uring_register_op.
enum class RegisterOp : uint32_t {
  RegisterBuffers = 0,
  UnregisterBuffers = 1,
  RegisterFiles = 2,
  UnregisterFiles = 3,
  RegisterEventfd = 4,
  UnregisterEventfd = 5,
  RegisterFilesUpdate = 6,
  RegisterEventfdAsync = 7,
  RegisterProbe = 8,
  RegisterPersonality = 9,
  UnregisterPersonality = 10,
  RegisterRestrictions = 11,
  RegisterEnableRings = 12,
  RegisterFiles2 = 13,
  RegisterFilesUpdate2 = 14,
  RegisterBuffers2 = 15,
  RegisterBuffersUpdate = 16,
  RegisterIowqAff = 17,
  UnregisterIowqAff = 18,
  RegisterIowqMaxWorkers = 19,
  RegisterRingFds = 20,
  UnregisterRingFds = 21,
  RegisterPbufRing = 22,
  UnregisterPbufRing = 23,
  RegisterSyncCancel = 24,
  RegisterFileAllocRange = 25,
  RegisterPbufStatus = 26,
  RegisterNapi = 27,
  UnregisterNapi = 28,
  RegisterClock = 29,
  RegisterCloneBuffers = 30,
  RegisterLast,
  UseRegisteredRing = 1u << 31,  // flag or'ed into the opcode
};

/// enum io_wq_type.
enum class IoWqType : uint32_t { Bound = 0, Unbound = 1 };

/// struct io_uring_files_update (deprecated form of RsrcUpdate).
struct FilesUpdate {
  uint32_t offset;
  uint32_t resv;
  alignas(8) uint64_t fds;  // pointer to int32_t[]
};

/// io_uring_rsrc_register flags: register an all-empty table without passing -1s.
inline constexpr uint32_t RSRC_REGISTER_SPARSE = 1u << 0;

/// struct io_uring_rsrc_register (REGISTER_FILES2 / REGISTER_BUFFERS2).
struct RsrcRegister {
  uint32_t nr;
  uint32_t flags;
  uint64_t resv2;
  alignas(8) uint64_t data;
  alignas(8) uint64_t tags;
};

/// struct io_uring_rsrc_update.
struct RsrcUpdate {
  uint32_t offset;
  uint32_t resv;
  alignas(8) uint64_t data;
};

/// struct io_uring_rsrc_update2 (REGISTER_FILES_UPDATE2 / REGISTER_BUFFERS_UPDATE).
struct RsrcUpdate2 {
  uint32_t offset;
  uint32_t resv;
  alignas(8) uint64_t data;
  alignas(8) uint64_t tags;
  uint32_t nr;
  uint32_t resv2;
};

/// In a files update: leave this slot as it is.
inline constexpr int32_t REGISTER_FILES_SKIP = -2;

/// io_uring_probe_op->flags: the opcode is supported.
inline constexpr uint16_t PROBE_OP_SUPPORTED = 1u << 0;

/// struct io_uring_probe_op.
struct ProbeOp {
  uint8_t op;
  uint8_t resv;
  uint16_t flags;
  uint32_t resv2;
};

/// struct io_uring_probe without its flexible `ops[]` tail, which follows at offset 16: allocate
/// sizeof(Probe) + n * sizeof(ProbeOp) and pass n as the register count.
struct Probe {
  uint8_t last_op;
  uint8_t ops_len;
  uint16_t resv;
  uint32_t resv2[3];
};
inline constexpr size_t PROBE_OPS_OFFSET = sizeof(Probe);

/// struct io_uring_restriction.
struct Restriction {
  uint16_t opcode;  // a RestrictionOp
  union {
    uint8_t register_op;
    uint8_t sqe_op;
    uint8_t sqe_flags;
  };
  uint8_t resv;
  uint32_t resv2[3];
};

/// struct io_uring_clock_register.
struct ClockRegister {
  uint32_t clockid;
  uint32_t resv[3];
};

/// io_uring_clone_buffers flags: src_fd is a registered ring index.
inline constexpr uint32_t REGISTER_SRC_REGISTERED = 1;

/// struct io_uring_clone_buffers.
struct CloneBuffers {
  uint32_t src_fd;
  uint32_t flags;
  uint32_t pad[6];
};

/// struct io_uring_buf: one provided buffer in a buffer ring.
struct Buf {
  uint64_t addr;
  uint32_t len;
  uint16_t bid;
  uint16_t resv;
};

/// struct io_uring_buf_ring header: the ring tail overlays bufs[0].resv (byte 14), so the
/// entries start at offset 0 and the header costs no space.
struct BufRing {
  union {
    __extension__ struct {
      uint64_t resv1;
      uint32_t resv2;
      uint16_t resv3;
      uint16_t tail;
    };
    Buf bufs[1];
  };
};

/// enum io_uring_register_pbuf_ring_flags.
namespace pbuf_ring {
inline constexpr uint16_t MMAP = 1;
inline constexpr uint16_t INC = 2;
}  // namespace pbuf_ring

/// struct io_uring_buf_reg.
struct BufReg {
  uint64_t ring_addr;
  uint32_t ring_entries;
  uint16_t bgid;
  uint16_t flags;
  uint32_t min_left;
  uint32_t resv[5];
};

/// struct io_uring_buf_status.
struct BufStatus {
  uint32_t buf_group;
  uint32_t head;
  uint32_t resv[8];
};

/// struct io_uring_napi.
struct Napi {
  uint32_t busy_poll_to;
  uint8_t prefer_busy_poll;
  uint8_t pad[3];
  uint64_t resv;
};

/// enum io_uring_register_restriction_op.
enum class RestrictionOp : uint16_t {
  RegisterOp = 0,
  SqeOp = 1,
  SqeFlagsAllowed = 2,
  SqeFlagsRequired = 3,
  Last,
};

/// struct io_uring_getevents_arg: the EXT_ARG argument of io_uring_enter().
struct GeteventsArg {
  uint64_t sigmask;
  uint32_t sigmask_sz;
  uint32_t min_wait_usec;
  uint64_t ts;  // pointer to KernelTimespec
};

/// struct io_uring_sync_cancel_reg.
struct SyncCancelReg {
  uint64_t addr;
  int32_t fd;
  uint32_t flags;
  KernelTimespec timeout;
  uint8_t opcode;
  uint8_t pad[7];
  uint64_t pad2[3];
};

/// struct io_uring_file_index_range: [off, off + len).
struct FileIndexRange {
  uint32_t off;
  uint32_t len;
  uint64_t resv;
};

/// struct io_uring_recvmsg_out: header of a multishot recvmsg buffer.
struct RecvmsgOut {
  uint32_t namelen;
  uint32_t controllen;
  uint32_t payloadlen;
  uint32_t flags;
};

/// enum io_uring_socket_op: uring_cmd ops on sockets.
enum class SocketOp : uint32_t { Siocinq = 0, Siocoutq, Getsockopt, Setsockopt };

}  // namespace pepita::abi
