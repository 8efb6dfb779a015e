#pragma once
// Forwarding header: CRC32C moved to core (pepita/core/crc32c.hpp) so modules that do not depend
// on fault can checksum. Kept so `fault::crc32c` callers still build; new code includes core's.

#include "pepita/core/crc32c.hpp"

namespace pepita::fault {

using pepita::crc32c;
using pepita::crc32c_portable;

}  // namespace pepita::fault
