#pragma once
// The library version, kept equal to the CMake project version.

namespace pepita {
inline constexpr const char* kVersion = "0.1.0";
}
