// CPU feature probing (CPUID + XGETBV) and the process-wide active kernel level.
// Compiled for the x86-64 baseline: nothing here may use AVX, it runs before dispatch decides.

#include "pepita/simd/dispatch.hpp"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "detail/active.hpp"

namespace pepita::simd {
namespace {
constexpr std::uint64_t kXcr0Sse = 1u << 1;
constexpr std::uint64_t kXcr0Avx = 1u << 2;       // YMM upper halves
constexpr std::uint64_t kXcr0Opmask = 1u << 5;    // k0-k7
constexpr std::uint64_t kXcr0ZmmHi256 = 1u << 6;  // ZMM0-15 upper halves
constexpr std::uint64_t kXcr0Hi16Zmm = 1u << 7;   // ZMM16-31

std::uint64_t read_xcr0() noexcept {
  std::uint32_t eax = 0;
  std::uint32_t edx = 0;
  // SAFETY: only called after CPUID.1:ECX.OSXSAVE[bit 27] = 1, which guarantees XGETBV exists and
  // XCR0 (ecx = 0) is readable at CPL 3. Clobbers only eax/edx.
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

CpuFeatures probe() noexcept {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return f;
  const unsigned max_leaf = a;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
  const bool osxsave = (c & bit_OSXSAVE) != 0;
  const bool cpu_fma = (c & bit_FMA) != 0;
  const bool cpu_avx = (c & bit_AVX) != 0;
  const bool cpu_f16c = (c & bit_F16C) != 0;
  if (!osxsave || !cpu_avx) return f;
  const std::uint64_t xcr0 = read_xcr0();
  const bool os_avx = (xcr0 & (kXcr0Sse | kXcr0Avx)) == (kXcr0Sse | kXcr0Avx);
  const std::uint64_t zmm_state = kXcr0Opmask | kXcr0ZmmHi256 | kXcr0Hi16Zmm;
  const bool os_avx512 = os_avx && (xcr0 & zmm_state) == zmm_state;
  if (!os_avx) return f;
  f.fma = cpu_fma;
  f.f16c = cpu_f16c;
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const unsigned leaf7_ebx = b;
  const unsigned leaf7_ecx = c;
  f.avx2 = (leaf7_ebx & bit_AVX2) != 0;
  if (os_avx512) {
    f.avx512f = (leaf7_ebx & bit_AVX512F) != 0;
    f.avx512bw = f.avx512f && (leaf7_ebx & bit_AVX512BW) != 0;
    f.avx512vl = f.avx512f && (leaf7_ebx & bit_AVX512VL) != 0;
    f.avx512dq = f.avx512f && (leaf7_ebx & bit_AVX512DQ) != 0;
    f.avx512_vnni = f.avx512f && (leaf7_ecx & bit_AVX512VNNI) != 0;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512f && (a & bit_AVX512BF16) != 0;
  }
  return f;
}
}  // namespace

Level level_of(const CpuFeatures& f) noexcept {
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma) return Level::avx512;
  if (f.avx2 && f.fma) return Level::avx2;
  return Level::scalar;
}

namespace {

Result<Level> level_from_env() {
  const char* env = std::getenv("PEPITA_SIMD");
  if (env == nullptr || *env == '\0') return detected_level();
  auto level = parse_level(env);
  if (!level) return std::unexpected(std::move(level.error()).with_context("PEPITA_SIMD"));
  if (*level > detected_level()) {
    return fail(ErrorCode::Unsupported, std::string("PEPITA_SIMD=") + env +
                                            ": this CPU/OS supports at most " +
                                            std::string(to_string(detected_level())) +
                                            "; unset PEPITA_SIMD or pick a lower level");
  }
  return *level;
}

const detail::Kernels* table_for(Level level) noexcept {
  switch (level) {
    case Level::avx512: {
      const CpuFeatures& f = cpu_features();
      return &detail::avx512_tables[(f.avx512_vnni ? 1 : 0) | (f.avx512_bf16 ? 2 : 0)];
    }
    case Level::avx2: return &detail::avx2_table;
    case Level::scalar: break;
  }
  return &detail::scalar_table;
}

void publish(Level level) noexcept {
  detail::g_active_table.store(table_for(level), std::memory_order_relaxed);
}

struct State {
  std::atomic<std::uint8_t> active;
  std::atomic<bool> forced_by_env{false};
  // Why PEPITA_SIMD was ignored at start-up (empty when unset or valid); written once, before
  // the static is published, then only read.
  std::string env_error;
  State() {
    auto env = level_from_env();
    if (!env) env_error = env.error().message();
    forced_by_env.store(env.has_value() && *env != detected_level(), std::memory_order_relaxed);
    active.store(static_cast<std::uint8_t>(env.value_or(detected_level())),
                 std::memory_order_relaxed);
    publish(env.value_or(detected_level()));
  }
};

State& state() noexcept {
  static State s;
  return s;
}

}  // namespace

const CpuFeatures& cpu_features() noexcept {
  static const CpuFeatures features = probe();
  return features;
}

Level detected_level() noexcept {
  static const Level level = level_of(cpu_features());
  return level;
}

Level active_level() noexcept {
  // Relaxed: the level is a standalone flag; kernels need no ordering with other memory.
  return static_cast<Level>(state().active.load(std::memory_order_relaxed));
}

Result<void> set_level(Level level) {
  if (level > detected_level()) {
    return fail(ErrorCode::Unsupported,
                "SIMD level " + std::string(to_string(level)) + " is not available: this CPU/OS " +
                    "supports at most " + std::string(to_string(detected_level())));
  }
  state().active.store(static_cast<std::uint8_t>(level), std::memory_order_relaxed);
  state().forced_by_env.store(false, std::memory_order_relaxed);
  publish(level);
  return {};
}

void reset_level() noexcept {
  state().active.store(static_cast<std::uint8_t>(detected_level()), std::memory_order_relaxed);
  state().forced_by_env.store(false, std::memory_order_relaxed);
  publish(detected_level());
}

Result<Level> parse_level(std::string_view name) {
  if (name == "scalar") return Level::scalar;
  if (name == "avx2") return Level::avx2;
  if (name == "avx512") return Level::avx512;
  return fail(ErrorCode::InvalidArgument,
              "unknown SIMD level '" + std::string(name) + "': use scalar, avx2 or avx512");
}

Result<Level> init_level_from_env() {
  auto level = level_from_env();
  if (!level) return level;
  state().active.store(static_cast<std::uint8_t>(*level), std::memory_order_relaxed);
  state().forced_by_env.store(*level != detected_level(), std::memory_order_relaxed);
  publish(*level);
  return level;
}

std::string_view to_string(Level level) noexcept {
  switch (level) {
    case Level::scalar: return "scalar";
    case Level::avx2: return "avx2";
    case Level::avx512: return "avx512";
  }
  return "unknown";
}

bool vnni_active() noexcept {
  return active_level() == Level::avx512 && cpu_features().avx512_vnni;
}

bool bf16_active() noexcept {
  return active_level() == Level::avx512 && cpu_features().avx512_bf16;
}

std::string level_summary() {
  const CpuFeatures& f = cpu_features();
  std::string s(to_string(active_level()));
  s += " (detected ";
  s += to_string(detected_level());
  if (f.avx512_vnni) s += " +vnni";
  if (f.avx512_bf16) s += " +bf16";
  if (active_level() != detected_level())
    s += state().forced_by_env.load(std::memory_order_relaxed) ? "; PEPITA_SIMD" : "; forced";
  if (!state().env_error.empty()) s += "; ignored " + state().env_error;
  s += ")";
  return s;
}

namespace detail {

// Null until the first kernel call (or level change) applies PEPITA_SIMD.
std::atomic<const Kernels*> g_active_table{nullptr};

const Kernels& init_active_kernels() noexcept {
  (void)state();  // probes the CPU, applies PEPITA_SIMD, publishes the table
  return *g_active_table.load(std::memory_order_relaxed);
}

}  // namespace detail
}  // namespace pepita::simd
