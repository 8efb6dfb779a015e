#pragma once
// Runtime ISA dispatch for pepita's SIMD kernels: what the CPU and the OS support (CPUID leaves 1
// and 7, XGETBV/XCR0 per the Intel SDM vol. 1 §13.3 "enabling the XSAVE feature set"), and which
// kernel level is active. Every kernel entry point reads the active level, so no AVX instruction
// executes before this layer has decided the CPU and OS can run it.
//
//   auto det = pepita::simd::detected_level();           // e.g. Level::avx512
//   PEPITA_TRY_VOID(pepita::simd::set_level(Level::avx2));  // force a lower level (tests, A/B)
//   std::string s = pepita::simd::level_summary();       // "avx512 (detected avx512 +vnni +bf16)"

#include <cstdint>
#include <string>
#include <string_view>

#include "pepita/error.hpp"

namespace pepita::simd {

/// Kernel levels, ordered: a CPU that runs a level runs every level below it.
enum class Level : std::uint8_t {
  scalar = 0,  // portable C++ (x86-64 baseline, SSE2 at most from the compiler)
  avx2 = 1,    // AVX2 + FMA3
  avx512 = 2,  // AVX-512 F + BW + VL (+ VNNI and BF16 kernels when the CPU has them)
};

/// What CPUID says and XCR0 allows. A flag is true only when the CPU has the instruction set AND
/// the OS saves its register state on context switch (an AVX-512 CPU under an OS that leaves
/// the ZMM state disabled reports avx512f = false).
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512_vnni = false;
  bool avx512_bf16 = false;
};

/// Features of this CPU, probed once (thread-safe) and cached.
const CpuFeatures& cpu_features() noexcept;

/// Highest level this CPU and OS can run.
Level detected_level() noexcept;

/// Highest level a CPU with features `f` runs (detected_level() is level_of(cpu_features())):
/// avx512 needs AVX-512 F, BW and VL and also AVX2 and FMA; avx2 needs AVX2 and FMA.
Level level_of(const CpuFeatures& f) noexcept;

/// Level the kernels use now. Initially the detected level, or the level named by the
/// PEPITA_SIMD environment variable (scalar|avx2|avx512) when it is set and valid; an invalid or
/// unavailable PEPITA_SIMD is reported by init_level_from_env() and otherwise ignored
/// (falls back to the detected level).
Level active_level() noexcept;

/// Forces the kernels to `level` for the whole process. Errors: Unsupported when the CPU/OS
/// lacks it (never an illegal instruction later). Not meant to be called while other threads are
/// inside kernels: a kernel already running finishes on the level it started with.
[[nodiscard]] Result<void> set_level(Level level);

/// Sets the active level to the detected one again.
void reset_level() noexcept;

/// Parses "scalar", "avx2" or "avx512" (case-sensitive). Errors: InvalidArgument.
[[nodiscard]] Result<Level> parse_level(std::string_view name);

/// Applies PEPITA_SIMD now. Ok(level) when unset (detected level) or valid; InvalidArgument for
/// an unknown name; Unsupported when the named level exceeds the CPU's. On error the active
/// level is left unchanged.
[[nodiscard]] Result<Level> init_level_from_env();

/// "scalar", "avx2" or "avx512".
std::string_view to_string(Level level) noexcept;

/// True when the int8 dot uses AVX-512 VNNI (vpdpbusd) at the active level.
bool vnni_active() noexcept;
/// True when the bf16 dot uses AVX-512 BF16 (vdpbf16ps) at the active level.
bool bf16_active() noexcept;

/// One line for `pepita info`: the active level, then the detected one with its extensions, e.g.
/// "avx512 (detected avx512 +vnni +bf16)", "avx2 (detected avx512 +vnni +bf16; PEPITA_SIMD)"
/// or, when PEPITA_SIMD was invalid at start-up, "...; ignored PEPITA_SIMD: unknown SIMD level
/// 'avx9': use scalar, avx2 or avx512)".
std::string level_summary();

}  // namespace pepita::simd
