// CRC32C known vectors (RFC 3720 B.4) and the SSE4.2 path checked against the table.
#include "pepita/core/crc32c.hpp"

#include <gtest/gtest.h>

#include <span>
#include <string>

namespace pepita {
namespace {

TEST(Crc32c, KnownVectorsAndFastPathMatchesTable) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);  // RFC 3720 B.4: 32 bytes of zeros
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 37));
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 63u, 1000u}) {
    auto bytes = std::as_bytes(std::span(data.data(), n));
    EXPECT_EQ(crc32c(bytes), crc32c_portable(bytes));
  }
  // Incremental equals one-shot.
  EXPECT_EQ(crc32c(data.substr(500), crc32c(data.substr(0, 500))), crc32c(data));
}

TEST(Crc32c, DetectsASingleFlippedBit) {
  std::string data(4096, 'a');
  const std::uint32_t clean = crc32c(data);
  data[1234] = static_cast<char>(data[1234] ^ 0x10);
  EXPECT_NE(crc32c(data), clean);
  EXPECT_EQ(crc32c(std::as_bytes(std::span(data.data(), data.size()))),
            crc32c_portable(std::as_bytes(std::span(data.data(), data.size()))));
}

}  // namespace
}  // namespace pepita
