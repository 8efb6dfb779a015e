#pragma once
// A minimal 8250/16550A UART on port I/O (COM1 at 0x3f8), enough for Linux's early console
// (earlyprintk=serial) and the 8250 driver's probing: THR writes become output, LSR always reports
// the transmitter empty, IER/LCR/MCR/SCR/DLL/DLM hold what was written, IIR reports no interrupt
// (with the 16550A FIFO bits once FCR enables them) and MSR follows MCR in loopback mode.
// Register offsets and bits: the 16550A data sheet (also Linux's include/uapi/linux/serial_reg.h).

#include <cstdint>
#include <string>

namespace pepita::vmm::detail {

class Uart8250 {
 public:
  static constexpr uint16_t kCom1 = 0x3f8;
  static constexpr uint16_t kPorts = 8;

  bool owns(uint16_t port) const noexcept { return port >= base_ && port < base_ + kPorts; }

  /// A guest `in` from `port` (owns(port)).
  uint8_t read(uint16_t port) noexcept;
  /// A guest `out`; a transmitted byte is appended to `out` unless it already holds `limit` bytes.
  /// Returns true when the byte was a newline (a console line ended).
  bool write(uint16_t port, uint8_t value, std::string& out, uint64_t limit);

 private:
  bool dlab() const noexcept { return (lcr_ & 0x80) != 0; }
  uint16_t base_ = kCom1;
  uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0, fcr_ = 0;
};

}  // namespace pepita::vmm::detail
