// The 8250/16550A UART register file (see detail/uart8250.hpp).
#include "detail/uart8250.hpp"

namespace pepita::vmm::detail {
namespace {

// Register offsets from the base port.
enum : uint16_t {
  kRbrThr = 0,
  kIer = 1,
  kIirFcr = 2,
  kLcr = 3,
  kMcr = 4,
  kLsr = 5,
  kMsr = 6,
  kScr = 7
};

constexpr uint8_t kLsrThrEmpty = 0x20;     // THRE
constexpr uint8_t kLsrTxEmpty = 0x40;      // TEMT
constexpr uint8_t kIirNoInterrupt = 0x01;  // no interrupt pending
constexpr uint8_t kIirFifos = 0xc0;        // 16550A with FIFOs enabled
constexpr uint8_t kMcrLoop = 0x10;

}  // namespace

uint8_t Uart8250::read(uint16_t port) noexcept {
  switch (static_cast<uint16_t>(port - base_)) {
    case kRbrThr: return dlab() ? dll_ : 0;  // no input: RBR reads 0
    case kIer: return dlab() ? dlm_ : ier_;
    case kIirFcr: return static_cast<uint8_t>(((fcr_ & 1) ? kIirFifos : 0) | kIirNoInterrupt);
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: return kLsrThrEmpty | kLsrTxEmpty;
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD (the 8250 driver's probe checks this).
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return 0xb0;  // DCD | DSR | CTS: a terminal is attached
    case kScr: return scr_;
    default: return 0xff;
  }
}

bool Uart8250::write(uint16_t port, uint8_t value, std::string& out, uint64_t limit) {
  switch (static_cast<uint16_t>(port - base_)) {
    case kRbrThr:
      if (dlab()) {
        dll_ = value;
        return false;
      }
      if (out.size() < limit) out.push_back(static_cast<char>(value));
      return value == '\n';
    case kIer:
      if (dlab()) {
        dlm_ = value;
      } else {
        ier_ = value & 0x0f;
      }
      return false;
    case kIirFcr: fcr_ = value; return false;
    case kLcr: lcr_ = value; return false;
    case kMcr: mcr_ = value & 0x1f; return false;
    case kScr: scr_ = value; return false;
    default: return false;  // LSR and MSR are read-only
  }
}

}  // namespace pepita::vmm::detail
