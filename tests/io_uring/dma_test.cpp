// DmaBuffers as io_uring fixed buffers: registration, WRITE_FIXED / READ_FIXED round trip through
// a file (O_DIRECT where the filesystem takes it), and the direction and range checks that keep
// a bad SQE from being prepared.
#include "pepita/io_uring/dma.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using memory::DmaBuffer;
using memory::DmaDirection;

TEST(DmaFixedBuffers, WriteFixedThenReadFixedRoundTrip) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  auto out = DmaBuffer::allocate(2 * 4096, DmaDirection::ToDevice);
  auto in = DmaBuffer::allocate(2 * 4096, DmaDirection::FromDevice);
  ASSERT_TRUE(out && in) << (out ? in.error().to_string() : out.error().to_string());
  const DmaBuffer* table[] = {&*out, &*in};
  auto reg = register_dma_buffers(ring, table);
  ASSERT_TRUE(reg) << reg.error().to_string();

  // /var/tmp is a disk filesystem here even where /tmp is tmpfs (which refuses O_DIRECT).
  UniqueFd f = test::temp_file(O_DIRECT, "/var/tmp");
  const bool direct = static_cast<bool>(f);
  if (!f) f = test::temp_file();
  ASSERT_TRUE(f);
  for (size_t i = 0; i < out->size(); ++i) out->data()[i] = static_cast<std::byte>(i * 7 + 3);
  auto w = prep_write_fixed(*ring.get_sqe(), f.get(), *out, 0, 0, 8192, 4096);
  ASSERT_TRUE(w) << w.error().to_string();
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 8192);
  // Read the second page back into the middle of `in` (offset inside a fixed buffer).
  auto r = prep_read_fixed(*ring.get_sqe(), f.get(), *in, 1, 4096, 4096, 8192);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(test::submit_and_reap_one(ring).res, 4096);
  EXPECT_EQ(std::memcmp(in->data() + 4096, out->data() + 4096, 4096), 0)
      << (direct ? "with O_DIRECT" : "buffered");
  ASSERT_TRUE(ring.unregister_buffers());
}

TEST(DmaFixedBuffers, DirectionAndRangeAreCheckedBeforeTheSqeIsFilled) {
  auto out = DmaBuffer::allocate(4096, DmaDirection::ToDevice);
  auto in = DmaBuffer::allocate(4096, DmaDirection::FromDevice);
  ASSERT_TRUE(out && in);
  abi::Sqe sqe{};
  auto read_into_out = prep_read_fixed(sqe, 3, *out, 0, 0, 4096, 0);
  ASSERT_FALSE(read_into_out);
  EXPECT_EQ(read_into_out.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(read_into_out.error().message().find("READ_FIXED"), std::string::npos);
  EXPECT_NE(read_into_out.error().message().find("to-device"), std::string::npos);
  auto write_from_in = prep_write_fixed(sqe, 3, *in, 0, 0, 4096, 0);
  ASSERT_FALSE(write_from_in);
  EXPECT_NE(write_from_in.error().message().find("WRITE_FIXED"), std::string::npos);
  auto past_end = prep_read_fixed(sqe, 3, *in, 0, 2048, 4096, 0);
  ASSERT_FALSE(past_end);
  EXPECT_NE(past_end.error().message().find("outside"), std::string::npos);
  const abi::Sqe untouched{};
  EXPECT_EQ(std::memcmp(&sqe, &untouched, sizeof(sqe)), 0);  // refusals leave the SQE alone
  ASSERT_TRUE(prep_read_fixed(sqe, 3, *in, 5, 1024, 1024, 77));
  EXPECT_EQ(sqe.opcode, static_cast<uint8_t>(abi::Op::ReadFixed));
  EXPECT_EQ(sqe.buf_index, 5);
  EXPECT_EQ(sqe.addr, reinterpret_cast<uintptr_t>(in->data() + 1024));
  EXPECT_EQ(sqe.len, 1024u);
  EXPECT_EQ(sqe.off, 77u);
}

TEST(DmaFixedBuffers, RegistrationRefusesEmptyAndDirectionlessBuffers) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  EXPECT_FALSE(register_dma_buffers(ring, {}));
  DmaBuffer empty;
  const DmaBuffer* bad[] = {&empty};
  auto e = register_dma_buffers(ring, bad);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("buffer 0 holds no memory"), std::string::npos);
  auto none = DmaBuffer::allocate(4096, DmaDirection::None, {.lock = memory::MemLock::No});
  ASSERT_TRUE(none);
  const DmaBuffer* directionless[] = {&*none};
  auto d = register_dma_buffers(ring, directionless);
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message().find("direction none"), std::string::npos);
  const DmaBuffer* null_entry[] = {nullptr};
  EXPECT_FALSE(register_dma_buffers(ring, null_entry));
  // Nothing was registered by the refusals: a good table still goes in.
  auto good = DmaBuffer::allocate(4096, DmaDirection::Bidirectional);
  ASSERT_TRUE(good);
  const DmaBuffer* table[] = {&*good};
  EXPECT_TRUE(register_dma_buffers(ring, table));
}

TEST(DmaFixedBuffers, MoreBuffersThanTheKernelTakesIsRefusedBeforeAnyIsRead) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 4});
  // The count is checked first: the (null) entries are never looked at.
  const std::vector<const DmaBuffer*> too_many(16385, nullptr);
  auto r = register_dma_buffers(ring, too_many);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::InvalidArgument);
  EXPECT_NE(r.error().message().find("16385 buffers; the kernel takes at most 16384"),
            std::string::npos)
      << r.error().message();
}

}  // namespace
}  // namespace pepita::io_uring
