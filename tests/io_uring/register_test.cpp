// Registration: fixed buffers with read_fixed/write_fixed, fixed files (dense, sparse, updated),
// eventfd notification and the errors of misuse.
#include <gtest/gtest.h>
#include <sys/eventfd.h>

#include <cstring>
#include <string>
#include <vector>

#include "pepita/core/mapping.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

TEST(Register, FixedBuffersReadAndWrite) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  auto mem = Mapping::anonymous(2 * 4096, "fixed buffers");
  ASSERT_TRUE(mem);
  iovec bufs[2] = {{mem->bytes(), 4096}, {mem->bytes() + 4096, 4096}};
  auto reg = ring.register_buffers(bufs);
  ASSERT_TRUE(reg) << reg.error().to_string();
  EXPECT_FALSE(ring.register_buffers(bufs));  // already registered: EBUSY

  UniqueFd f = test::temp_file(O_DIRECT);
  if (!f) f = test::temp_file();
  std::memset(mem->bytes(), 'q', 4096);
  prep_write_fixed(*ring.get_sqe(), f.get(), mem->bytes(), 4096, 0, 0);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 4096);
  prep_read_fixed(*ring.get_sqe(), f.get(), mem->bytes() + 4096, 4096, 0, 1);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 4096);
  EXPECT_EQ(std::memcmp(mem->bytes(), mem->bytes() + 4096, 4096), 0);

  // A range outside the registered buffer is refused per request.
  prep_read_fixed(*ring.get_sqe(), f.get(), mem->bytes(), 8192, 0, 0);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, -EFAULT);
  // An index past the table.
  prep_read_fixed(*ring.get_sqe(), f.get(), mem->bytes(), 16, 0, 9);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, -EFAULT);

  ASSERT_TRUE(ring.unregister_buffers());
  auto again = ring.unregister_buffers();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().sys_errno(), ENXIO);
  EXPECT_FALSE(ring.register_buffers({}));
}

TEST(Register, FixedFilesDenseAndSparse) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  UniqueFd f1 = test::temp_file(), f2 = test::temp_file();
  const int fds[2] = {f1.get(), -1};
  ASSERT_TRUE(ring.register_files(fds));
  abi::Sqe* w = ring.get_sqe();
  prep_write(*w, 0, "slot0", 5, 0);  // fd field is the slot index
  w->flags |= abi::sqe_flags::FIXED_FILE;
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 5);
  char back[5];
  ASSERT_EQ(::pread(f1.get(), back, 5, 0), 5);
  EXPECT_EQ(std::string(back, 5), "slot0");

  // Slot 1 is empty until updated.
  w = ring.get_sqe();
  prep_write(*w, 1, "x", 1, 0);
  w->flags |= abi::sqe_flags::FIXED_FILE;
  EXPECT_EQ(test::submit_and_reap_one(ring).res, -EBADF);
  const int upd[1] = {f2.get()};
  auto n = ring.update_files(1, upd);
  ASSERT_TRUE(n) << n.error().to_string();
  EXPECT_EQ(*n, 1u);
  w = ring.get_sqe();
  prep_write(*w, 1, "slot1", 5, 0);
  w->flags |= abi::sqe_flags::FIXED_FILE;
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 5);
  EXPECT_FALSE(ring.update_files(5, upd));  // past the table
  ASSERT_TRUE(ring.unregister_files());

  // Sparse table filled later.
  ASSERT_TRUE(ring.register_files_sparse(16));
  const int skip_then_f1[2] = {abi::REGISTER_FILES_SKIP, f1.get()};
  auto m = ring.update_files(14, skip_then_f1);
  ASSERT_TRUE(m) << m.error().to_string();
  w = ring.get_sqe();
  prep_read(*w, 15, back, 5, 0);
  w->flags |= abi::sqe_flags::FIXED_FILE;
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 5);
  EXPECT_EQ(std::string(back, 5), "slot0");
  // Closing a direct descriptor empties its slot.
  prep_close_direct(*ring.get_sqe(), 15);
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
  w = ring.get_sqe();
  prep_read(*w, 15, back, 5, 0);
  w->flags |= abi::sqe_flags::FIXED_FILE;
  EXPECT_EQ(test::submit_and_reap_one(ring).res, -EBADF);
  EXPECT_FALSE(ring.register_files_sparse(0));
  EXPECT_FALSE(ring.register_files({}));
}

TEST(Register, EventfdIsSignalledOnCompletion) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  UniqueFd efd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(efd);
  ASSERT_TRUE(ring.register_eventfd(efd.get()));
  EXPECT_FALSE(ring.register_eventfd(efd.get()));  // one eventfd per ring: EBUSY
  prep_nop(*ring.get_sqe());
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 0);
  std::uint64_t count = 0;
  ASSERT_EQ(::read(efd.get(), &count, sizeof count), static_cast<ssize_t>(sizeof count));
  EXPECT_GE(count, 1u);
  ASSERT_TRUE(ring.unregister_eventfd());
  auto bad = ring.register_eventfd(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().sys_errno(), EBADF);
}

}  // namespace
}  // namespace pepita::io_uring
