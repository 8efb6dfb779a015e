// The reference crate's front-page "kernel interfaces" example and the io_uring and ublk module
// examples, in C++ through the umbrella header, then the same entries run on a real io_uring.
// Prints one line per check; tests/seed registers it with CTest and matches the whole output.
#include <cstdio>

#include "pepita/pepita.hpp"

// lib.rs: verify ABI compatibility with the Linux kernel.
static_assert(sizeof(pepita::UblkCtrlCmd) == 32);
static_assert(sizeof(pepita::UblkIoDesc) == 24);
static_assert(sizeof(pepita::IoUringSqe) == 64);
// io_uring.rs
static_assert(sizeof(pepita::io_uring::IoUringSqe) == 64);
static_assert(sizeof(pepita::io_uring::IoUringCqe) == 16);
// ublk.rs
static_assert(pepita::ublk::UBLK_U_CMD_ADD_DEV == 0xc0207504u);

int main() {
  using namespace pepita;
  std::printf("UblkCtrlCmd %zu UblkIoDesc %zu UblkIoCmd %zu IoUringSqe %zu IoUringCqe %zu\n",
              sizeof(UblkCtrlCmd), sizeof(UblkIoDesc), sizeof(UblkIoCmd), sizeof(IoUringSqe),
              sizeof(IoUringCqe));

  // ublk.rs: a control command for device 0, and the ioctl encoding of ADD_DEV.
  const UblkCtrlCmd ctrl = UblkCtrlCmd::make(0);
  std::printf("ctrl.dev_id %u UBLK_U_CMD_ADD_DEV 0x%08x IORING_OP_URING_CMD %u\n", ctrl.dev_id,
              UBLK_U_CMD_ADD_DEV, unsigned{IORING_OP_URING_CMD});
  std::printf("SECTOR_SIZE %u PAGE_SIZE %zu MAX_QUEUE_DEPTH %u MAX_HW_QUEUES %u\n",
              constants::SECTOR_SIZE, constants::PAGE_SIZE, unsigned{constants::MAX_QUEUE_DEPTH},
              unsigned{constants::MAX_HW_QUEUES});

  // The same entry types on a real ring: a NOP comes back with its user_data.
  auto ring = io_uring::Ring::create({.entries = 4});
  if (!ring) {
    std::printf("io_uring unavailable: %s\n", ring.error().to_string().c_str());
    return 0;
  }
  *ring->get_sqe() = IoUringSqe::nop(42);
  if (auto sent = ring->submit_and_wait(1); !sent) {
    std::fprintf(stderr, "submit: %s\n", sent.error().to_string().c_str());
    return 1;
  }
  const IoUringCqe cqe = *ring->peek_cqe();
  ring->cqe_seen();
  std::printf("nop: user_data %llu success %d\n", static_cast<unsigned long long>(cqe.user_data),
              cqe.is_success() ? 1 : 0);
  return cqe.user_data == 42 && cqe.is_success() ? 0 : 1;
}
