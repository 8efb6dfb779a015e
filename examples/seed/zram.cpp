// The reference crate's zram module example (zram.rs) in C++: a 1 GiB compressed RAM block
// device with the LZ4 compressor, on pepita's ZramDisk (the crate's ZramDevice/ZramConfig). Then
// what the crate's example leaves out: a page written through the block interface is stored
// compressed and reads back unchanged.
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "pepita/pepita.hpp"

int main() {
  using namespace pepita;
  auto device = zram::ZramDisk::create(
      {.store = {.disksize = 1ull << 30, .algorithm = zram::Algorithm::Lz4}});
  if (!device) {
    std::fprintf(stderr, "zram: %s\n", device.error().to_string().c_str());
    return 1;
  }
  std::printf("zram: %llu bytes, %s\n",
              static_cast<unsigned long long>((*device)->info().capacity_bytes()), "lz4");

  constexpr std::string_view kText = "pepita zram example; ";
  std::vector<std::byte> page(constants::PAGE_SIZE);
  for (size_t i = 0; i < page.size(); ++i)
    page[i] = static_cast<std::byte>(kText[i % kText.size()]);
  std::vector<std::byte> back(page.size());
  blk_mq::TagSet tags((*device)->info().tag_set);
  auto wrote = blk_mq::execute(**device, tags, 0, RequestOp::Write, 0, page);
  auto read = blk_mq::execute(**device, tags, 0, RequestOp::Read, 0, back);
  if (!wrote || !read) {
    std::fprintf(stderr, "zram I/O: %s\n",
                 (!wrote ? wrote.error() : read.error()).to_string().c_str());
    return 1;
  }
  const zram::ZramStats stats = (*device)->store().stats();
  const bool same = std::memcmp(page.data(), back.data(), page.size()) == 0;
  std::printf("stored %llu bytes, compressed smaller %d, read back %s\n",
              static_cast<unsigned long long>(stats.orig_data_size),
              stats.compr_data_size < stats.orig_data_size ? 1 : 0, same ? "equal" : "DIFFERENT");
  return same ? 0 : 1;
}
