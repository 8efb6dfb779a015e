#pragma once
// pepita's umbrella header: every public module header, in module order (PEPITA_MODULE_ORDER),
// plus the reference crate's root re-exports (`pepita::UblkCtrlCmd`, `pepita::IoUringSqe`, ...)
// and its `constants` module, so the crate's front page reads the same in C++ (docs/seed-map.md).
// Link pepita::pepita. Each module header also stands alone; include those to build less.
//
//   #include <pepita/pepita.hpp>
//   static_assert(sizeof(pepita::UblkCtrlCmd) == 32 && sizeof(pepita::IoUringSqe) == 64);
//   auto pool = pepita::pool::Pool::builder().cpu_workers(4).build();
//   auto task = pepita::task::Task::binary("./worker").args({"--input", "data.bin"}).build();
//   pepita::Result<pepita::executor::ExecutionResult> result = pool->run(*task);
//
// The kernel's <linux/io_uring.h>, <linux/ublk_cmd.h> and <linux/kvm.h> define some of the same
// names as macros (IOSQE_*, UBLK_U_*, UBLK_F_*, KVM_API_VERSION): include either them or this
// header in a translation unit.

#include <cstddef>
#include <cstdint>

#include "pepita/abi/blk_mq.hpp"
#include "pepita/abi/io_uring.hpp"
#include "pepita/abi/memory.hpp"
#include "pepita/abi/ublk.hpp"
#include "pepita/abi/virtio.hpp"
#include "pepita/abi/virtio_blk.hpp"
#include "pepita/abi/virtio_mmio.hpp"
#include "pepita/abi/virtio_vsock.hpp"
#include "pepita/blk_mq/block_device.hpp"
#include "pepita/blk_mq/file_disk.hpp"
#include "pepita/blk_mq/mem_disk.hpp"
#include "pepita/blk_mq/null_disk.hpp"
#include "pepita/blk_mq/tag_allocator.hpp"
#include "pepita/blk_mq/target_spec.hpp"
#include "pepita/core/crc32c.hpp"
#include "pepita/core/format.hpp"
#include "pepita/core/mapping.hpp"
#include "pepita/core/size.hpp"
#include "pepita/core/sys.hpp"
#include "pepita/core/sys/check.hpp"
#include "pepita/core/sys/eventfd.hpp"
#include "pepita/core/sys/fd.hpp"
#include "pepita/core/sys/memory.hpp"
#include "pepita/core/sys/process.hpp"
#include "pepita/core/sys/signal.hpp"
#include "pepita/core/sys/socket.hpp"
#include "pepita/core/sys/thread.hpp"
#include "pepita/core/unique_fd.hpp"
#include "pepita/error.hpp"
#include "pepita/executor/blocking_runner.hpp"
#include "pepita/executor/cpu.hpp"
#include "pepita/executor/executor.hpp"
#include "pepita/executor/executor_registry.hpp"
#include "pepita/executor/process.hpp"
#include "pepita/executor/registry.hpp"
#include "pepita/executor/result.hpp"
#include "pepita/fault/failure_detector.hpp"
#include "pepita/fault/journal.hpp"
#include "pepita/fault/result_record.hpp"
#include "pepita/fault/retry.hpp"
#include "pepita/gpu/buffer.hpp"
#include "pepita/gpu/builtins.hpp"
#include "pepita/gpu/crate_api.hpp"
#include "pepita/gpu/device.hpp"
#include "pepita/gpu/gpu_executor.hpp"
#include "pepita/gpu/kernel.hpp"
#include "pepita/gpu/reflect.hpp"
#include "pepita/gpu/timeline.hpp"
#include "pepita/io_uring/barrier.hpp"
#include "pepita/io_uring/dma.hpp"
#include "pepita/io_uring/event_loop.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/probe.hpp"
#include "pepita/io_uring/ring.hpp"
#include "pepita/io_uring/task.hpp"
#include "pepita/io_uring/uapi.hpp"
#include "pepita/memory/address.hpp"
#include "pepita/memory/dma_buffer.hpp"
#include "pepita/memory/guest_memory.hpp"
#include "pepita/memory/page_allocator.hpp"
#include "pepita/pool/job.hpp"
#include "pepita/pool/pool.hpp"
#include "pepita/scheduler/deque.hpp"
#include "pepita/scheduler/parallel.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "pepita/scheduler/task.hpp"
#include "pepita/scheduler/task_group.hpp"
#include "pepita/simd/dispatch.hpp"
#include "pepita/simd/kernels.hpp"
#include "pepita/simd/ops.hpp"
#include "pepita/simd/sgemm.hpp"
#include "pepita/slurm/commands.hpp"
#include "pepita/slurm/slurm_executor.hpp"
#include "pepita/slurm/workers.hpp"
#include "pepita/task/affinity.hpp"
#include "pepita/task/graph.hpp"
#include "pepita/task/task.hpp"
#include "pepita/transport/connection.hpp"
#include "pepita/transport/crypto.hpp"
#include "pepita/transport/frame.hpp"
#include "pepita/transport/lease_table.hpp"
#include "pepita/transport/message.hpp"
#include "pepita/transport/messages.hpp"
#include "pepita/transport/remote.hpp"
#include "pepita/transport/remote_executor.hpp"
#include "pepita/transport/result_codec.hpp"
#include "pepita/transport/session.hpp"
#include "pepita/transport/worker.hpp"
#include "pepita/ublk/ctrl.hpp"
#include "pepita/ublk/queue.hpp"
#include "pepita/ublk/recovery.hpp"
#include "pepita/ublk/request.hpp"
#include "pepita/ublk/server.hpp"
#include "pepita/ublk/targets.hpp"
#include "pepita/ublk/uapi.hpp"
#include "pepita/version.hpp"
#include "pepita/virtio/blk.hpp"
#include "pepita/virtio/console.hpp"
#include "pepita/virtio/device.hpp"
#include "pepita/virtio/mmio.hpp"
#include "pepita/virtio/queue.hpp"
#include "pepita/virtio/rng.hpp"
#include "pepita/virtio/uapi.hpp"
#include "pepita/virtio/vhost_user.hpp"
#include "pepita/virtio/vhost_user_proto.hpp"
#include "pepita/virtio/vsock.hpp"
#include "pepita/virtio/vsock_crate.hpp"
#include "pepita/vmm/config_builder.hpp"
#include "pepita/vmm/elf_image.hpp"
#include "pepita/vmm/guest_abi.hpp"
#include "pepita/vmm/jailer.hpp"
#include "pepita/vmm/microvm_executor.hpp"
#include "pepita/vmm/uapi.hpp"
#include "pepita/vmm/vcpu_api.hpp"
#include "pepita/vmm/vm.hpp"
#include "pepita/zram/block_target.hpp"
#include "pepita/zram/datasets.hpp"
#include "pepita/zram/measure.hpp"
#include "pepita/zram/zram_disk.hpp"
#include "pepita/zram/zram_store.hpp"

namespace pepita {

// The crate's root re-exports (lib.rs `pub use`), each the real type or constant.
using blk_mq::BlockOps;
using blk_mq::Request;
using blk_mq::RequestOp;
using blk_mq::TagSetConfig;

// pepita::Result<T> is error.hpp's std::expected<T, Error>.
// pepita::KernelError is error.hpp's ErrorCode (the crate's kernel error cases are its values).

using io_uring::IORING_OP_URING_CMD;
using io_uring::IoUringCqe;
using io_uring::IoUringSqe;

using memory::DmaBuffer;
using memory::DmaDirection;
using memory::PageAllocator;
using memory::Pfn;
using memory::PhysAddr;
using memory::VirtAddr;

using ublk::UBLK_F_CMD_IOCTL_ENCODE;
using ublk::UBLK_F_SUPPORT_ZERO_COPY;
using ublk::UBLK_F_USER_COPY;
using ublk::UBLK_U_CMD_ADD_DEV;
using ublk::UBLK_U_CMD_DEL_DEV;
using ublk::UBLK_U_CMD_GET_PARAMS;
using ublk::UBLK_U_CMD_SET_PARAMS;
using ublk::UBLK_U_CMD_START_DEV;
using ublk::UBLK_U_CMD_STOP_DEV;
using ublk::UBLK_U_IO_COMMIT_AND_FETCH_REQ;
using ublk::UBLK_U_IO_FETCH_REQ;
using ublk::UblkCtrlCmd;
using ublk::UblkIoCmd;
using ublk::UblkIoDesc;

/// The crate's `constants` module. Each value is the limit pepita enforces, not a second copy:
/// SECTOR_SIZE is the block layer's sector, PAGE_SIZE the page the ABI headers assume (checked
/// against sysconf in tests), MAX_QUEUE_DEPTH and MAX_HW_QUEUES the bounds validate_tag_set()
/// accepts for every pepita block device (ublk's driver caps depth lower, at 4096:
/// abi::ublk::MAX_QUEUE_DEPTH, and the server says so when a config asks for more).
namespace constants {
inline constexpr uint32_t SECTOR_SIZE = abi::blk_mq::kSectorSize;
inline constexpr std::size_t PAGE_SIZE = abi::PAGE_SIZE;
inline constexpr uint16_t MAX_QUEUE_DEPTH = abi::blk_mq::kMaxDepth;
inline constexpr uint16_t MAX_HW_QUEUES = abi::blk_mq::kMaxQueues;
}  // namespace constants

}  // namespace pepita

// The crate's module paths that name a type another pepita module owns.
namespace pepita::task {
/// The crate keeps ExecutionResult in its task module; ours lives in executor.
using executor::ExecutionResult;
}  // namespace pepita::task
