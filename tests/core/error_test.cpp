#include "pepita/error.hpp"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cerrno>

namespace pepita {
namespace {

TEST(Error, FromErrnoAcceptsBothSignsAndNamesTheOperation) {
  Error positive = Error::from_errno(ENOENT, "open /dev/kvm");
  Error negative = Error::from_errno(-ENOENT, "open /dev/kvm");
  EXPECT_EQ(positive.code(), ErrorCode::NotFound);
  EXPECT_EQ(negative.code(), ErrorCode::NotFound);
  EXPECT_EQ(positive.sys_errno(), ENOENT);
  EXPECT_EQ(negative.sys_errno(), ENOENT);
  EXPECT_NE(positive.message().find("open /dev/kvm"), std::string::npos);
  EXPECT_NE(positive.message().find("ENOENT"), std::string::npos);
  EXPECT_NE(positive.message().find("check that the path exists"), std::string::npos);
}

TEST(Error, RoundTripsNegativeErrno) {
  for (int err : {EPERM, ENOENT, EIO, EAGAIN, ENOMEM, EBUSY, EINVAL, ENOSPC, ETIMEDOUT}) {
    EXPECT_EQ(Error::from_errno(-err, "op").to_negative_errno(), -err) << err;
  }
}

TEST(Error, CodeWithoutErrnoStillMapsToAnErrno) {
  EXPECT_EQ(Error(ErrorCode::InvalidArgument, "x").to_negative_errno(), -EINVAL);
  EXPECT_EQ(Error(ErrorCode::ResourceExhausted, "x").to_negative_errno(), -ENOSPC);
  EXPECT_EQ(Error(ErrorCode::Unsupported, "x").to_negative_errno(), -EOPNOTSUPP);
}

// Transient errors are retriable, and of the exhaustion errors those that may clear (memory,
// buffers, descriptors), not a full device or a bare ResourceExhausted.
TEST(Error, TransientErrorsAndExhaustionThatMayClearAreRetriable) {
  EXPECT_TRUE(Error::from_errno(EAGAIN, "x").is_retriable());
  EXPECT_TRUE(Error::from_errno(EINTR, "x").is_retriable());
  EXPECT_TRUE(Error::from_errno(EBUSY, "x").is_retriable());
  for (int err : {ENOMEM, ENOBUFS, EMFILE, ENFILE}) {
    const Error e = Error::from_errno(err, "x");
    EXPECT_EQ(e.code(), ErrorCode::ResourceExhausted) << err;
    EXPECT_TRUE(e.is_retriable()) << err;
  }
  EXPECT_FALSE(Error(ErrorCode::ResourceExhausted, "full").is_retriable());
  EXPECT_TRUE(Error(ErrorCode::TimedOut, "deadline").is_retriable());
  EXPECT_FALSE(Error::from_errno(ENOSPC, "x").is_retriable());
  EXPECT_FALSE(Error::from_errno(EINVAL, "x").is_retriable());
  EXPECT_FALSE(Error::from_errno(EPERM, "x").is_retriable());
  EXPECT_FALSE(Error(ErrorCode::Corrupted, "crc").is_retriable());
}

TEST(Error, WithContextPrepends) {
  Error e(ErrorCode::Protocol, "bad magic");
  e.with_context("reading frame");
  EXPECT_EQ(e.message(), "reading frame: bad magic");
  EXPECT_EQ(e.to_string(), "protocol: reading frame: bad magic");
}

// Every category has its own name and errno; a value outside the enum (a corrupt wire byte)
// still names and maps to something instead of an empty string or 0 ("no error").
TEST(Error, EveryCodeHasANameAndANegativeErrnoAndAnUnknownOneStillMaps) {
  EXPECT_EQ(to_string(ErrorCode::Ok), "ok");
  EXPECT_EQ(to_string(ErrorCode::Internal), "internal");
  const auto bogus = static_cast<ErrorCode>(200);
  EXPECT_EQ(to_string(bogus), "unknown");
  EXPECT_EQ(to_errno(bogus), -EIO);
  EXPECT_EQ(to_errno(ErrorCode::Ok), 0);
  EXPECT_EQ(to_errno(ErrorCode::AlreadyExists), -EEXIST);
  EXPECT_EQ(to_errno(ErrorCode::Protocol), -EPROTO);
  EXPECT_EQ(to_errno(ErrorCode::Corrupted), -EILSEQ);
  EXPECT_EQ(to_errno(ErrorCode::Disconnected), -ECONNRESET);
  EXPECT_EQ(to_errno(ErrorCode::Internal), -EIO);
  EXPECT_EQ(code_from_errno(0), ErrorCode::Ok);
}

// The message names the errno and says what to do about it.
TEST(Error, FromErrnoNamesMissingSyscallsAndFileLimitsWithWhatToDo) {
  const Error nosys = Error::from_errno(-ENOSYS, "io_uring_setup");
  EXPECT_NE(nosys.message().find("io_uring_setup: "), std::string::npos) << nosys.message();
  EXPECT_NE(nosys.message().find("(ENOSYS)"), std::string::npos) << nosys.message();
  EXPECT_NE(nosys.message().find("the running kernel lacks this system call"), std::string::npos)
      << nosys.message();
  const Error mfile = Error::from_errno(EMFILE, "accept");
  EXPECT_NE(mfile.message().find("(EMFILE)"), std::string::npos) << mfile.message();
  EXPECT_NE(mfile.message().find("ulimit -n"), std::string::npos) << mfile.message();
  EXPECT_EQ(mfile.code(), ErrorCode::ResourceExhausted);
}

Result<int> half(int x) {
  if (x % 2 != 0) return fail(ErrorCode::InvalidArgument, "odd");
  return x / 2;
}

Result<int> quarter(int x) {
  int h = PEPITA_TRY(half(x));
  return PEPITA_TRY(half(h));
}

TEST(Error, TryPropagates) {
  EXPECT_EQ(quarter(8).value(), 2);
  ASSERT_FALSE(quarter(6).has_value());
  EXPECT_EQ(quarter(6).error().code(), ErrorCode::InvalidArgument);
}

RC_GTEST_PROP(Error, EveryErrnoMapsToACodeAndBack, ()) {
  const int err = *rc::gen::inRange(1, 134);
  Error e = Error::from_errno(-err, "op");
  RC_ASSERT(e.sys_errno() == err);
  RC_ASSERT(e.to_negative_errno() == -err);
  RC_ASSERT(e.code() != ErrorCode::Ok);
  RC_ASSERT(!to_string(e.code()).empty());
}

}  // namespace
}  // namespace pepita
