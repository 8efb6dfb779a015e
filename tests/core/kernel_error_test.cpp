// pepita::KernelError (= ErrorCode) against the reference crate's error.rs: its variants spelled
// the same, to_errno giving the crate's errno, from_errno mapping back, and its retriable and
// resource-error classification, plus a few real call sites that now report those codes.

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cerrno>
#include <set>
#include <string>
#include <utility>

#include "pepita/error.hpp"

namespace pepita {
namespace {

constexpr std::pair<KernelError, int> kCrateErrno[] = {
    {KernelError::InvalidAddress, -EFAULT},
    {KernelError::AlignmentError, -EINVAL},
    {KernelError::OverlappingRegion, -EINVAL},
    {KernelError::IoTimeout, -ETIMEDOUT},
    {KernelError::DeviceNotReady, -ENODEV},
    {KernelError::InvalidRequest, -EINVAL},
    {KernelError::Cancelled, -ECANCELED},
    {KernelError::UblkQueueFull, -EAGAIN},
    {KernelError::UblkInvalidTag, -EINVAL},
    {KernelError::UblkDeviceBusy, -EBUSY},
    {KernelError::UblkDeviceNotFound, -ENODEV},
    {KernelError::UblkInvalidDeviceId, -EINVAL},
    {KernelError::UblkNotPermitted, -EPERM},
    {KernelError::IoUringSubmitFull, -EAGAIN},
    {KernelError::IoUringCqOverflow, -EOVERFLOW},
    {KernelError::IoUringInvalidOpcode, -EINVAL},
    {KernelError::BlockError, -EIO},
    {KernelError::NoTagsAvailable, -EAGAIN},
    {KernelError::InvalidQueueId, -EINVAL},
    {KernelError::NotSupported, -EOPNOTSUPP},
    {KernelError::InvalidArgument, -EINVAL},
    {KernelError::WouldBlock, -EAGAIN},
    {KernelError::Interrupted, -EINTR},
    {KernelError::ResourceBusy, -EBUSY},
};

TEST(KernelError, ToErrnoMatchesTheCrateForEveryVariant) {
  for (auto [code, err] : kCrateErrno) EXPECT_EQ(to_errno(code), err) << to_string(code);
  // The one deliberate difference: OutOfMemory is our ResourceExhausted category.
  EXPECT_EQ(KernelError::OutOfMemory, ErrorCode::ResourceExhausted);
  EXPECT_EQ(Error::from_errno(ENOMEM, "mmap").to_negative_errno(), -ENOMEM);
}

TEST(KernelError, FromErrnoMapsBackToTheCodeOrItsCategory) {
  // The crate's from_errno table; where it names a subsystem case an errno alone cannot prove,
  // ours returns the category (documented in error.hpp).
  const std::pair<int, KernelError> table[] = {
      {-ENOMEM, KernelError::OutOfMemory},     {-EFAULT, KernelError::InvalidArgument},
      {-ETIMEDOUT, KernelError::IoTimeout},    {-ENODEV, KernelError::NotFound},
      {-ECANCELED, KernelError::Cancelled},    {-EBUSY, KernelError::ResourceBusy},
      {-EPERM, KernelError::PermissionDenied}, {-EOVERFLOW, KernelError::ResourceExhausted},
      {-EIO, KernelError::BlockError},         {-EOPNOTSUPP, KernelError::NotSupported},
      {-EINTR, KernelError::Interrupted},      {-EAGAIN, KernelError::WouldBlock},
      {-EINVAL, KernelError::InvalidArgument},
  };
  for (auto [err, code] : table) EXPECT_EQ(code_from_errno(err), code) << err;
  // Every code's errno maps to a code with that same errno, or to the category above.
  for (auto [code, err] : kCrateErrno) {
    const ErrorCode back = code_from_errno(to_errno(code));
    EXPECT_EQ(code_from_errno(to_errno(back)), back) << to_string(code);
  }
}

TEST(KernelError, EveryNewCodeHasItsOwnStableName) {
  std::set<std::string> names;
  for (auto [code, err] : kCrateErrno) {
    std::string name(to_string(code));
    EXPECT_NE(name, "unknown") << static_cast<int>(code);
    names.insert(name);
  }
  EXPECT_EQ(to_string(KernelError::UblkQueueFull), "ublk-queue-full");
  EXPECT_EQ(to_string(KernelError::IoUringCqOverflow), "io-uring-cq-overflow");
  // 24 variants listed; InvalidRequest and InvalidArgument are one code.
  EXPECT_EQ(names.size(), 23u);
}

TEST(KernelError, RetriableAndResourceClassesMatchTheCrate) {
  for (KernelError c :
       {KernelError::WouldBlock, KernelError::UblkQueueFull, KernelError::IoUringSubmitFull,
        KernelError::NoTagsAvailable, KernelError::UblkDeviceBusy}) {
    EXPECT_TRUE(is_retriable(c)) << to_string(c);
    EXPECT_TRUE(Error(c, "x").is_retriable()) << to_string(c);
  }
  for (KernelError c : {KernelError::InvalidArgument, KernelError::UblkInvalidTag,
                        KernelError::IoUringInvalidOpcode, KernelError::InvalidAddress,
                        KernelError::UblkNotPermitted, KernelError::IoUringCqOverflow}) {
    EXPECT_FALSE(is_retriable(c)) << to_string(c);
  }
  for (KernelError c :
       {KernelError::OutOfMemory, KernelError::UblkQueueFull, KernelError::NoTagsAvailable}) {
    EXPECT_TRUE(is_resource_error(c)) << to_string(c);
  }
  EXPECT_FALSE(is_resource_error(KernelError::UblkDeviceBusy));
  EXPECT_FALSE(is_resource_error(KernelError::InvalidQueueId));
}

TEST(KernelError, ErrorWithoutErrnoUsesTheCodesErrno) {
  EXPECT_EQ(Error(KernelError::IoUringCqOverflow, "cq").to_negative_errno(), -EOVERFLOW);
  EXPECT_EQ(Error(KernelError::UblkInvalidTag, "tag").to_negative_errno(), -EINVAL);
  EXPECT_EQ(Error(KernelError::NoTagsAvailable, "t").to_string().rfind("no-tags-available", 0), 0u);
}

RC_GTEST_PROP(KernelError, FromErrnoThenToErrnoIsStableForAnyErrno, ()) {
  const int err = *rc::gen::inRange(-4096, 4097);
  // Whatever errno comes in, the code it maps to maps to an errno that maps to the same code.
  const ErrorCode c = code_from_errno(err);
  RC_ASSERT(code_from_errno(to_errno(c)) == c);
}

}  // namespace
}  // namespace pepita
