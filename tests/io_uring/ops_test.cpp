// Every prep helper against the real kernel: file I/O (buffered and O_DIRECT), vectored I/O,
// fsync/fallocate/openat/statx/close, links, timeouts, cancellation, sockets, poll, splice and
// msg_ring.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "pepita/core/mapping.hpp"
#include "pepita/io_uring/prep.hpp"
#include "pepita/io_uring/ring.hpp"
#include "test_util.hpp"

namespace pepita::io_uring {
namespace {

using test::Done;

Done run_one(Ring& ring, std::uint64_t user_data = 0) {
  Done d = test::submit_and_reap_one(ring);
  if (user_data != 0) {
    EXPECT_EQ(d.user_data, user_data);
  }
  return d;
}

TEST(Ops, BufferedWriteThenRead) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  UniqueFd f = test::temp_file();
  ASSERT_TRUE(f);
  const std::string data = "pepita io_uring buffered";
  prep_write(*ring.get_sqe(), f.get(), data.data(), static_cast<std::uint32_t>(data.size()), 100);
  EXPECT_EQ(run_one(ring).res, static_cast<int>(data.size()));
  std::string back(data.size(), '\0');
  prep_read(*ring.get_sqe(), f.get(), back.data(), static_cast<std::uint32_t>(back.size()), 100);
  EXPECT_EQ(run_one(ring).res, static_cast<int>(data.size()));
  EXPECT_EQ(back, data);
  // Reading past EOF is a short (zero) read, not an error.
  prep_read(*ring.get_sqe(), f.get(), back.data(), 8, 1 << 20);
  EXPECT_EQ(run_one(ring).res, 0);
}

TEST(Ops, DirectIoWithAlignedBuffers) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  UniqueFd f = test::temp_file(O_DIRECT);
  if (!f) GTEST_SKIP() << "O_DIRECT not supported on /tmp";
  auto buf = Mapping::anonymous(64 * 1024, "test buffer");
  ASSERT_TRUE(buf);
  auto* bytes = static_cast<unsigned char*>(buf->data());
  for (std::size_t i = 0; i < 64 * 1024; ++i) bytes[i] = static_cast<unsigned char>(i * 7);
  prep_write(*ring.get_sqe(), f.get(), bytes, 64 * 1024, 0);
  ASSERT_EQ(run_one(ring).res, 64 * 1024);
  auto in = Mapping::anonymous(4096, "test buffer");
  ASSERT_TRUE(in);
  prep_read(*ring.get_sqe(), f.get(), in->data(), 4096, 8192);
  ASSERT_EQ(run_one(ring).res, 4096);
  EXPECT_EQ(std::memcmp(in->data(), bytes + 8192, 4096), 0);
  // Misaligned O_DIRECT offset: the kernel refuses with EINVAL; the ring keeps working.
  prep_read(*ring.get_sqe(), f.get(), in->data(), 4096, 100);
  EXPECT_EQ(run_one(ring).res, -EINVAL);
}

TEST(Ops, VectoredReadAndWrite) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  UniqueFd f = test::temp_file();
  ASSERT_TRUE(f);
  char a[] = "abc", b[] = "defgh";
  iovec out[2] = {{a, 3}, {b, 5}};
  prep_writev(*ring.get_sqe(), f.get(), out, 2, 0);
  ASSERT_EQ(run_one(ring).res, 8);
  char x[4] = {}, y[4] = {};
  iovec in[2] = {{x, 4}, {y, 4}};
  prep_readv(*ring.get_sqe(), f.get(), in, 2, 0);
  ASSERT_EQ(run_one(ring).res, 8);
  EXPECT_EQ(std::string(x, 4), "abcd");
  EXPECT_EQ(std::string(y, 4), "efgh");
}

TEST(Ops, FsyncFallocateStatxOpenatClose) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  char dir[] = "/tmp/pepita_iou_dirXXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/file";
  prep_openat(*ring.get_sqe(), AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  const int fd = run_one(ring).res;
  ASSERT_GE(fd, 0);
  prep_fallocate(*ring.get_sqe(), fd, 0, 0, 1 << 20);
  EXPECT_EQ(run_one(ring).res, 0);
  prep_fsync(*ring.get_sqe(), fd, abi::fsync_flags::DATASYNC);
  EXPECT_EQ(run_one(ring).res, 0);
  struct statx st {};
  prep_statx(*ring.get_sqe(), AT_FDCWD, path.c_str(), 0, STATX_SIZE, &st);
  EXPECT_EQ(run_one(ring).res, 0);
  EXPECT_EQ(st.stx_size, 1u << 20);
  prep_close(*ring.get_sqe(), fd);
  EXPECT_EQ(run_one(ring).res, 0);
  prep_close(*ring.get_sqe(), fd);  // already closed
  EXPECT_EQ(run_one(ring).res, -EBADF);
  prep_openat(*ring.get_sqe(), AT_FDCWD, "/nonexistent/pepita", O_RDONLY, 0);
  EXPECT_EQ(run_one(ring).res, -ENOENT);
  ::unlink(path.c_str());
  ::rmdir(dir);
}

TEST(Ops, FailedLinkCancelsTheRestOfTheChain) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  UniqueFd f = test::temp_file();
  char buf[4] = {};
  abi::Sqe* first = ring.get_sqe();
  prep_read(*first, -1, buf, 4, 0);  // fails with EBADF
  first->flags |= abi::sqe_flags::IO_LINK;
  first->user_data = 1;
  abi::Sqe* second = ring.get_sqe();
  prep_write(*second, f.get(), "data", 4, 0);
  second->flags |= abi::sqe_flags::IO_LINK;
  second->user_data = 2;
  abi::Sqe* third = ring.get_sqe();
  prep_nop(*third);
  third->user_data = 3;
  const auto done = test::reap(ring, 3);
  ASSERT_EQ(done.size(), 3u);
  for (const Done& d : done) {
    if (d.user_data == 1) {
      EXPECT_EQ(d.res, -EBADF);
    }
    if (d.user_data == 2) {
      EXPECT_EQ(d.res, -ECANCELED);
    }
    if (d.user_data == 3) {
      EXPECT_EQ(d.res, -ECANCELED);
    }
  }
  struct stat st {};
  ASSERT_EQ(::fstat(f.get(), &st), 0);
  EXPECT_EQ(st.st_size, 0);  // the cancelled write never ran
}

TEST(Ops, HardlinkSurvivesFailureAndCqeSkip) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  char buf[4];
  abi::Sqe* first = ring.get_sqe();
  prep_read(*first, -1, buf, 4, 0);
  first->flags |= abi::sqe_flags::IO_HARDLINK;
  first->user_data = 1;
  abi::Sqe* second = ring.get_sqe();
  prep_nop(*second);
  second->user_data = 2;
  abi::Sqe* skipped = ring.get_sqe();
  prep_nop(*skipped);
  skipped->flags |= abi::sqe_flags::CQE_SKIP_SUCCESS;
  skipped->user_data = 3;
  const auto done = test::reap(ring, 2);
  ASSERT_EQ(done.size(), 2u);
  for (const Done& d : done) {
    EXPECT_NE(d.user_data, 3u);
    if (d.user_data == 2) {
      EXPECT_EQ(d.res, 0);
    }
  }
  EXPECT_EQ(ring.cq_ready(), 0u);
}

TEST(Ops, TimeoutFiresAndTimeoutCanBeRemoved) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  abi::KernelTimespec short_ts{.tv_sec = 0, .tv_nsec = 2'000'000};
  abi::Sqe* t = ring.get_sqe();
  prep_timeout(*t, &short_ts, 0, 0);
  t->user_data = 10;
  EXPECT_EQ(run_one(ring, 10).res, -ETIME);

  abi::KernelTimespec long_ts{.tv_sec = 60, .tv_nsec = 0};
  t = ring.get_sqe();
  prep_timeout(*t, &long_ts, 0, 0);
  t->user_data = 11;
  ASSERT_TRUE(ring.submit());
  abi::Sqe* rm = ring.get_sqe();
  prep_timeout_remove(*rm, 11, 0);
  rm->user_data = 12;
  for (const Done& d : test::reap(ring, 2)) {
    if (d.user_data == 11) {
      EXPECT_EQ(d.res, -ECANCELED);
    }
    if (d.user_data == 12) {
      EXPECT_EQ(d.res, 0);
    }
  }
  // Removing a timeout that does not exist.
  prep_timeout_remove(*ring.get_sqe(), 999, 0);
  EXPECT_EQ(run_one(ring).res, -ENOENT);
}

TEST(Ops, AsyncCancelOfPendingRecvAndLinkTimeout) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  char buf[16];
  abi::Sqe* recv = ring.get_sqe();
  prep_recv(*recv, a.get(), buf, sizeof buf, 0);
  recv->user_data = 20;
  ASSERT_TRUE(ring.submit());
  abi::Sqe* cancel = ring.get_sqe();
  prep_cancel(*cancel, 20, 0);
  cancel->user_data = 21;
  for (const Done& d : test::reap(ring, 2)) {
    if (d.user_data == 20) {
      EXPECT_EQ(d.res, -ECANCELED);
    }
    if (d.user_data == 21) {
      EXPECT_EQ(d.res, 0);
    }
  }
  // Cancel of an unknown request.
  prep_cancel(*ring.get_sqe(), 12345, 0);
  EXPECT_EQ(run_one(ring).res, -ENOENT);

  // A recv bounded by a linked timeout.
  recv = ring.get_sqe();
  prep_recv(*recv, a.get(), buf, sizeof buf, 0);
  recv->flags |= abi::sqe_flags::IO_LINK;
  recv->user_data = 30;
  abi::KernelTimespec ts{.tv_sec = 0, .tv_nsec = 5'000'000};
  abi::Sqe* lt = ring.get_sqe();
  prep_link_timeout(*lt, &ts, 0);
  lt->user_data = 31;
  for (const Done& d : test::reap(ring, 2)) {
    if (d.user_data == 30) {
      EXPECT_EQ(d.res, -ECANCELED);
    }
    if (d.user_data == 31) {
      EXPECT_EQ(d.res, -ETIME);
    }
  }
}

TEST(Ops, TcpLoopbackAcceptConnectSendRecv) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 16});
  sockaddr_in addr{};
  UniqueFd listener = test::tcp_listener(&addr);
  ASSERT_TRUE(listener);
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  abi::Sqe* acc = ring.get_sqe();
  prep_accept(*acc, listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  acc->user_data = 1;
  abi::Sqe* con = ring.get_sqe();
  // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
  prep_connect(*con, client.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  con->user_data = 2;
  UniqueFd server;
  for (const Done& d : test::reap(ring, 2)) {
    if (d.user_data == 1) {
      ASSERT_GE(d.res, 0);
      server.reset(d.res);
    }
    if (d.user_data == 2) {
      EXPECT_EQ(d.res, 0);
    }
  }
  ASSERT_TRUE(server);
  const std::string msg = "ping over io_uring";
  prep_send(*ring.get_sqe(), client.get(), msg.data(), msg.size(), MSG_NOSIGNAL);
  EXPECT_EQ(run_one(ring).res, static_cast<int>(msg.size()));
  std::string got(64, '\0');
  prep_recv(*ring.get_sqe(), server.get(), got.data(), got.size(), 0);
  const int n = run_one(ring).res;
  ASSERT_EQ(n, static_cast<int>(msg.size()));
  EXPECT_EQ(got.substr(0, static_cast<std::size_t>(n)), msg);

  // sendmsg / recvmsg with two iovecs.
  char p1[] = "ab", p2[] = "cd";
  iovec siov[2] = {{p1, 2}, {p2, 2}};
  msghdr smsg{};
  smsg.msg_iov = siov;
  smsg.msg_iovlen = 2;
  prep_sendmsg(*ring.get_sqe(), server.get(), &smsg, MSG_NOSIGNAL);
  EXPECT_EQ(run_one(ring).res, 4);
  char r[4];
  iovec riov{r, 4};
  msghdr rmsg{};
  rmsg.msg_iov = &riov;
  rmsg.msg_iovlen = 1;
  prep_recvmsg(*ring.get_sqe(), client.get(), &rmsg, MSG_WAITALL);
  EXPECT_EQ(run_one(ring).res, 4);
  EXPECT_EQ(std::string(r, 4), "abcd");

  // Connect to a closed port is refused with ECONNREFUSED.
  sockaddr_in closed = addr;
  listener.reset();
  UniqueFd c2(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // SAFETY: as above.
  prep_connect(*ring.get_sqe(), c2.get(), reinterpret_cast<const sockaddr*>(&closed),
               sizeof closed);
  EXPECT_EQ(run_one(ring).res, -ECONNREFUSED);
}

TEST(Ops, MultishotAcceptPostsOneCqePerConnection) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 16});
  sockaddr_in addr{};
  UniqueFd listener = test::tcp_listener(&addr);
  ASSERT_TRUE(listener);
  abi::Sqe* acc = ring.get_sqe();
  prep_multishot_accept(*acc, listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
  acc->user_data = 7;
  ASSERT_TRUE(ring.submit());
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    // SAFETY: sockaddr_in is the AF_INET form of sockaddr.
    ASSERT_EQ(::connect(clients.back().get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  std::vector<UniqueFd> accepted;
  for (const Done& d : test::reap(ring, 3)) {
    EXPECT_EQ(d.user_data, 7u);
    ASSERT_GE(d.res, 0);
    EXPECT_NE(d.flags & abi::cqe_flags::MORE, 0u);  // still armed
    accepted.emplace_back(d.res);
  }
  EXPECT_EQ(accepted.size(), 3u);
  prep_cancel(*ring.get_sqe(), 7, 0);
  for (const Done& d : test::reap(ring, 2)) {
    if (d.user_data == 7) {
      EXPECT_EQ(d.flags & abi::cqe_flags::MORE, 0u);
    }
  }
}

TEST(Ops, PollSpliceAndMsgRing) {
  PEPITA_RING_OR_SKIP(ring, RingOptions{.entries = 8});
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  abi::Sqe* poll = ring.get_sqe();
  prep_poll_add(*poll, rd.get(), POLLIN);
  poll->user_data = 1;
  ASSERT_TRUE(ring.submit());
  EXPECT_EQ(ring.cq_ready(), 0u);
  ASSERT_EQ(::write(wr.get(), "spliced!", 8), 8);
  const Done polled = run_one(ring, 1);
  EXPECT_NE(polled.res & POLLIN, 0);

  UniqueFd f = test::temp_file();
  prep_splice(*ring.get_sqe(), rd.get(), -1, f.get(), 0, 8, 0);
  EXPECT_EQ(run_one(ring).res, 8);
  char back[8];
  ASSERT_EQ(::pread(f.get(), back, 8, 0), 8);
  EXPECT_EQ(std::string(back, 8), "spliced!");

  PEPITA_RING_OR_SKIP(other, RingOptions{.entries = 4});
  abi::Sqe* msg = ring.get_sqe();
  prep_msg_ring(*msg, other.fd(), 77, 0xfeed, 0);
  msg->user_data = 2;
  EXPECT_EQ(run_one(ring, 2).res, 0);
  const Done got = test::submit_and_reap_one(other);
  EXPECT_EQ(got.user_data, 0xfeedu);
  EXPECT_EQ(got.res, 77);
}

}  // namespace
}  // namespace pepita::io_uring
