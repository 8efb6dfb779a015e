// NullDisk (null_disk.hpp): checks each request, completes it, stores nothing.
#include "pepita/blk_mq/null_disk.hpp"

#include <cerrno>

namespace pepita::blk_mq {

void NullDisk::submit(uint32_t queue, const Request& req) noexcept {
  RequestCheck check = check_request(req, info_);
  if (check && queue >= info_.tag_set.nr_hw_queues) check = {-EINVAL, "no such queue"};
  if (!check) {
    req.completion->complete(check.neg_errno);
    return;
  }
  const bool data = req.op == Op::Read || req.op == Op::Write;
  req.completion->complete(data ? static_cast<int>(req.byte_length()) : 0);
}

}  // namespace pepita::blk_mq
