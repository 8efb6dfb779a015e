#pragma once
// virtio-console (virtio 1.2 section 5.3) with one port and no MULTIPORT: receiveq (0) carries
// host input into device-writable buffers, transmitq (1) carries guest output out of
// device-readable ones. Input is fed by the host (feed) and output collected with a byte limit.
//
//   auto con = ConsoleDevice::create({.output_limit = 1 << 20});
//   con->feed(as_bytes(input));                 // the guest reads it through receiveq
//   // transport: con->process(0 or 1, queue) on each kick
//   std::string out = con->take_output();       // what the guest wrote on transmitq

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "pepita/virtio/device.hpp"

namespace pepita::virtio::console {

// Feature bits (spec 5.3.3).
inline constexpr uint32_t F_SIZE = 0;
inline constexpr uint32_t F_MULTIPORT = 1;
inline constexpr uint32_t F_EMERG_WRITE = 2;

inline constexpr uint16_t kReceiveq = 0;
inline constexpr uint16_t kTransmitq = 1;

/// struct virtio_console_config (spec 5.3.4), little-endian.
struct Config {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};
static_assert(sizeof(Config) == 12);

struct ConsoleOptions {
  uint64_t output_limit = 1ull << 20;  // bytes of guest output kept; the rest is dropped, counted
  uint16_t max_queue_size = 256;
  uint16_t cols = 80, rows = 25;  // reported with F_SIZE
};

/// The console device. receiveq and transmitq may be served from different threads; feed() and
/// the output accessors are safe from any thread.
class ConsoleDevice final : public VirtioDevice {
 public:
  static std::unique_ptr<ConsoleDevice> create(const ConsoleOptions& options = {}) {
    return std::make_unique<ConsoleDevice>(options);
  }
  explicit ConsoleDevice(const ConsoleOptions& options);

  uint32_t device_id() const noexcept override { return abi::virtio::ID_CONSOLE; }
  uint64_t features() const noexcept override;
  uint16_t num_queues() const noexcept override { return 2; }
  uint16_t max_queue_size() const noexcept override { return options_.max_queue_size; }
  std::span<const std::byte> config() const noexcept override {
    return std::as_bytes(std::span(&config_, 1));
  }
  /// InvalidArgument for features not offered or without VERSION_1.
  Result<void> activate(uint64_t acked) override;
  /// Drops receive buffers the driver posted (they belong to the old queue); keeps unread input
  /// and the output collected so far.
  void reset() noexcept override;
  /// receiveq: takes every posted buffer and fills buffers in ring order from pending input; a
  /// buffer for which no input is pending yet is held until feed() and the next kick. transmitq:
  /// appends each chain's readable bytes to the output. Protocol error (NEEDS_RESET) when the
  /// driver broke the ring.
  Result<bool> process(uint16_t index, Queue& queue) override;
  /// Snapshot state: input not yet delivered and the receive buffers the guest posted that wait
  /// for input (they live in guest RAM, which the snapshot carries). Output is not part of it:
  /// what the guest wrote before the snapshot belonged to the capturing run.
  Result<std::vector<std::byte>> save_state() const override;
  Result<void> load_state(std::span<const std::byte> state) override;

  /// Queues bytes for the guest to receive.
  void feed(std::span<const std::byte> input);
  /// Bytes fed but not yet delivered to a guest buffer.
  size_t pending_input() const;
  /// Receive buffers posted by the guest and waiting for input.
  size_t waiting_buffers() const;

  std::string output() const;
  /// Returns the output collected so far and clears it (the limit counts afresh).
  std::string take_output();
  /// Guest output bytes dropped because output_limit was reached.
  uint64_t dropped_output() const;

 private:
  struct Waiting {
    uint16_t head;
    std::vector<Segment> writable;
  };
  Result<bool> receive(Queue& queue);
  Result<bool> transmit(Queue& queue);

  ConsoleOptions options_;
  Config config_{};
  Chain rx_chain_, tx_chain_;  // reused across pops, one per queue thread

  mutable std::mutex in_mu_;  // guards input_ and waiting_
  std::deque<std::byte> input_;
  std::deque<Waiting> waiting_;

  mutable std::mutex out_mu_;  // guards output_ and dropped_
  std::string output_;
  uint64_t dropped_ = 0;
};

}  // namespace pepita::virtio::console
