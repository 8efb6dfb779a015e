// sgemm driver: argument checks, packing, cache blocking and the parallel split. The only
// ISA-specific code is the micro-kernel reached through the active level's GemmShape; packing is
// plain C++ compiled for the baseline (it is O(mk + kn) per block against O(mnk) of FMA work).

#include "pepita/simd/sgemm.hpp"

#include <xmmintrin.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "detail/active.hpp"
#include "pepita/scheduler/parallel.hpp"
#include "pepita/scheduler/scheduler.hpp"

namespace pepita::simd {
namespace {

using detail::GemmShape;

struct FreeDeleter {
  void operator()(float* p) const noexcept { std::free(p); }
};

// A packing buffer kept per thread between calls: allocating (and page-faulting) a fresh
// buffer per call would cost several percent of a 256^3 product. Buffers above kRetainBytes
// are released after the call so an idle thread never pins megabytes.
class PackBuffer {
 public:
  static constexpr std::size_t kRetainBytes = 2u << 20;

  // 64-byte aligned so packed panels start on cache lines (unaligned 64-byte loads split lines).
  Result<float*> get(std::size_t count) {
    if (count > capacity_) {
      const std::size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
      buf_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      capacity_ = buf_ ? bytes / sizeof(float) : 0;
      if (!buf_) {
        return fail(ErrorCode::ResourceExhausted,
                    "sgemm: cannot allocate " + std::to_string(bytes) + " bytes of packing buffer");
      }
    }
    return buf_.get();
  }
  void trim() noexcept {
    if (capacity_ * sizeof(float) > kRetainBytes) {
      buf_.reset();
      capacity_ = 0;
    }
  }

 private:
  std::unique_ptr<float[], FreeDeleter> buf_;
  std::size_t capacity_ = 0;
};

thread_local PackBuffer tl_apack;
thread_local PackBuffer tl_bpack;

std::size_t round_up(std::size_t x, std::size_t to) { return (x + to - 1) / to * to; }

struct Operands {
  Transpose ta, tb;
  float alpha, beta;
  const float* a;
  std::size_t lda;
  const float* b;
  std::size_t ldb;
  float* c;
  std::size_t ldc;
};

// One full micro-panel of row-major A: 4x4 SSE transposes turn four rows' runs along k into
// the k-major layout the micro-kernel reads (SSE is part of the x86-64 baseline, so this runs
// before and regardless of dispatch); rows past the last multiple of 4 are copied one by one.
void pack_a_rows_sse(const Operands& op, std::size_t mr, std::size_t row0, std::size_t p0,
                     std::size_t kb, float* panel) {
  const __m128 alpha = _mm_set1_ps(op.alpha);
  std::size_t i = 0;
  for (; i + 4 <= mr; i += 4) {
    const float* r0 = op.a + (row0 + i) * op.lda + p0;
    const float* r1 = r0 + op.lda;
    const float* r2 = r1 + op.lda;
    const float* r3 = r2 + op.lda;
    std::size_t p = 0;
    for (; p + 4 <= kb; p += 4) {
      __m128 v0 = _mm_loadu_ps(r0 + p), v1 = _mm_loadu_ps(r1 + p);
      __m128 v2 = _mm_loadu_ps(r2 + p), v3 = _mm_loadu_ps(r3 + p);
      _MM_TRANSPOSE4_PS(v0, v1, v2, v3);
      _mm_storeu_ps(panel + (p + 0) * mr + i, _mm_mul_ps(alpha, v0));
      _mm_storeu_ps(panel + (p + 1) * mr + i, _mm_mul_ps(alpha, v1));
      _mm_storeu_ps(panel + (p + 2) * mr + i, _mm_mul_ps(alpha, v2));
      _mm_storeu_ps(panel + (p + 3) * mr + i, _mm_mul_ps(alpha, v3));
    }
    for (; p < kb; ++p) {
      panel[p * mr + i + 0] = op.alpha * r0[p];
      panel[p * mr + i + 1] = op.alpha * r1[p];
      panel[p * mr + i + 2] = op.alpha * r2[p];
      panel[p * mr + i + 3] = op.alpha * r3[p];
    }
  }
  for (; i < mr; ++i) {  // mr = 6 (AVX2): two rows left
    const float* src = op.a + (row0 + i) * op.lda + p0;
    for (std::size_t p = 0; p < kb; ++p) panel[p * mr + i] = op.alpha * src[p];
  }
}

// A block rows [i0, i0 + mb) x depth [p0, p0 + kb), alpha folded in, as ceil(mb / mr)
// micro-panels of kb columns of mr values; rows past mb are zero.
void pack_a(const Operands& op, std::size_t mr, std::size_t i0, std::size_t p0, std::size_t mb,
            std::size_t kb, float* dst) {
  for (std::size_t ir = 0; ir < mb; ir += mr) {
    const std::size_t rows = std::min(mr, mb - ir);
    float* panel = dst + ir * kb;
    if (op.ta == Transpose::no && rows == mr) {
      pack_a_rows_sse(op, mr, i0 + ir, p0, kb, panel);
      continue;
    }
    if (op.ta == Transpose::no) {
      for (std::size_t i = 0; i < rows; ++i) {
        const float* src = op.a + (i0 + ir + i) * op.lda + p0;
        for (std::size_t p = 0; p < kb; ++p) panel[p * mr + i] = op.alpha * src[p];
      }
    } else {
      for (std::size_t p = 0; p < kb; ++p) {
        const float* src = op.a + (p0 + p) * op.lda + i0 + ir;
        for (std::size_t i = 0; i < rows; ++i) panel[p * mr + i] = op.alpha * src[i];
      }
    }
    for (std::size_t i = rows; i < mr; ++i) {
      for (std::size_t p = 0; p < kb; ++p) panel[p * mr + i] = 0.0f;
    }
  }
}

// B block depth [p0, p0 + kb) x columns [j0, j0 + nb) as ceil(nb / nr) micro-panels of kb rows
// of nr values; columns past nb are zero.
void pack_b(const Operands& op, std::size_t nr, std::size_t p0, std::size_t j0, std::size_t kb,
            std::size_t nb, float* dst) {
  for (std::size_t jr = 0; jr < nb; jr += nr) {
    const std::size_t cols = std::min(nr, nb - jr);
    float* panel = dst + jr * kb;
    if (op.tb == Transpose::no) {
      for (std::size_t p = 0; p < kb; ++p) {
        const float* src = op.b + (p0 + p) * op.ldb + j0 + jr;
        float* out = panel + p * nr;
        for (std::size_t j = 0; j < cols; ++j) out[j] = src[j];
        for (std::size_t j = cols; j < nr; ++j) out[j] = 0.0f;
      }
    } else {
      for (std::size_t j = 0; j < cols; ++j) {
        const float* src = op.b + (j0 + jr + j) * op.ldb + p0;
        for (std::size_t p = 0; p < kb; ++p) panel[p * nr + j] = src[p];
      }
      for (std::size_t p = 0; p < kb; ++p) {
        for (std::size_t j = cols; j < nr; ++j) panel[p * nr + j] = 0.0f;
      }
    }
  }
}

void scale_c(const Operands& op, std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) {
  for (std::size_t i = i0; i < i1; ++i) {
    float* row = op.c + i * op.ldc;
    for (std::size_t j = j0; j < j1; ++j) row[j] = op.beta == 0.0f ? 0.0f : op.beta * row[j];
  }
}

// All micro-tiles of one packed A block (mb x kb) times one packed B block (kb x nb), into C at
// (ic, jc). A's micro-panel stays in L1 while the jr loop streams B's panels past it.
void macro_kernel(const GemmShape& g, const Operands& op, const float* apack, const float* bpack,
                  std::size_t ic, std::size_t jc, std::size_t mb, std::size_t nb, std::size_t kb,
                  float beta) {
  alignas(64) float edge[16 * 64];  // one micro-tile; mr * nr <= 16 * 64 on every level
  for (std::size_t ir = 0; ir < mb; ir += g.mr) {
    const float* ap = apack + ir * kb;
    const std::size_t rows = std::min(g.mr, mb - ir);
    for (std::size_t jr = 0; jr < nb; jr += g.nr) {
      const float* bp = bpack + jr * kb;
      const std::size_t cols = std::min(g.nr, nb - jr);
      float* ct = op.c + (ic + ir) * op.ldc + jc + jr;
      if (rows == g.mr && cols == g.nr) {
        g.kernel(kb, ap, bp, ct, op.ldc, beta);
        continue;
      }
      g.kernel(kb, ap, bp, edge, g.nr, 0.0f);
      for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) {
          float& cij = ct[i * op.ldc + j];
          cij = beta == 0.0f ? edge[i * g.nr + j] : edge[i * g.nr + j] + beta * cij;
        }
      }
    }
  }
}

// Goto's loop nest on the calling thread: jc (NC) -> pc (KC, pack B) -> ic (MC, pack A).
Result<void> gemm_serial(const GemmShape& g, const Operands& op, std::size_t m, std::size_t n,
                         std::size_t k) {
  const std::size_t kc = std::min(g.kc, k);
  const std::size_t mc = std::min(g.mc, round_up(m, g.mr));
  const std::size_t nc = std::min(g.nc, round_up(n, g.nr));
  float* apack = PEPITA_TRY(tl_apack.get(mc * kc));
  float* bpack = PEPITA_TRY(tl_bpack.get(kc * nc));
  for (std::size_t jc = 0; jc < n; jc += nc) {
    const std::size_t nb = std::min(nc, n - jc);
    for (std::size_t pc = 0; pc < k; pc += kc) {
      const std::size_t kb = std::min(kc, k - pc);
      pack_b(op, g.nr, pc, jc, kb, nb, bpack);
      // The first depth block applies beta; later ones accumulate onto it.
      const float beta = pc == 0 ? op.beta : 1.0f;
      for (std::size_t ic = 0; ic < m; ic += mc) {
        const std::size_t mb = std::min(mc, m - ic);
        pack_a(op, g.mr, ic, pc, mb, kb, apack);
        macro_kernel(g, op, apack, bpack, ic, jc, mb, nb, kb, beta);
      }
    }
  }
  tl_apack.trim();
  tl_bpack.trim();
  return {};
}

// The same nest with the B block packed once and shared (its panels packed in parallel), then
// the MC row blocks spread over the workers, each packing its own A block (BLIS's ic-loop
// parallelism). parallel_for's join orders the B writes before every read of them.
Result<void> gemm_parallel(const GemmShape& g, const Operands& op, std::size_t m, std::size_t n,
                           std::size_t k, scheduler::Scheduler& sched) {
  const std::size_t workers = sched.worker_count();
  const std::size_t kc = std::min(g.kc, k);
  // Enough row blocks for every worker to get about two, but not below one micro-panel.
  const std::size_t mc =
      std::min(g.mc, std::max(g.mr, round_up((m + 2 * workers - 1) / (2 * workers), g.mr)));
  const std::size_t nc = std::min(g.nc, round_up(n, g.nr));
  float* bpack = PEPITA_TRY(tl_bpack.get(kc * nc));
  std::mutex error_mu;
  std::optional<Error> first_error;
  for (std::size_t jc = 0; jc < n; jc += nc) {
    const std::size_t nb = std::min(nc, n - jc);
    for (std::size_t pc = 0; pc < k; pc += kc) {
      const std::size_t kb = std::min(kc, k - pc);
      const std::size_t b_panels = (nb + g.nr - 1) / g.nr;
      PEPITA_TRY_VOID(scheduler::parallel_for(
          sched, 0, b_panels,
          [&](std::size_t p) {
            const std::size_t jr = p * g.nr;
            pack_b(op, g.nr, pc, jc + jr, kb, std::min(g.nr, nb - jr), bpack + jr * kb);
          },
          std::max<std::size_t>(1, b_panels / (4 * workers))));
      const float beta = pc == 0 ? op.beta : 1.0f;
      const std::size_t blocks = (m + mc - 1) / mc;
      PEPITA_TRY_VOID(scheduler::parallel_for(
          sched, 0, blocks,
          [&](std::size_t blk) {
            const std::size_t ic = blk * mc;
            const std::size_t mb = std::min(mc, m - ic);
            auto apack = tl_apack.get(mc * kb);
            if (!apack) {
              const std::lock_guard lock(error_mu);
              if (!first_error) first_error = std::move(apack.error());
              return;
            }
            pack_a(op, g.mr, ic, pc, mb, kb, *apack);
            macro_kernel(g, op, *apack, bpack, ic, jc, mb, nb, kb, beta);
          },
          1));
      if (first_error) return std::unexpected(std::move(*first_error));
    }
  }
  tl_bpack.trim();
  return {};
}

Result<void> check_ld(std::size_t ld, std::size_t cols, const char* name) {
  if (ld >= std::max<std::size_t>(cols, 1)) return {};
  return fail(ErrorCode::InvalidArgument, std::string("sgemm: ") + name + " = " +
                                              std::to_string(ld) + " is below the row length " +
                                              std::to_string(cols) + " of the stored matrix");
}

}  // namespace

Result<void> sgemm(Transpose trans_a, Transpose trans_b, std::size_t m, std::size_t n,
                   std::size_t k, float alpha, const float* a, std::size_t lda, const float* b,
                   std::size_t ldb, float beta, float* c, std::size_t ldc,
                   const GemmOptions& options) {
  PEPITA_TRY_VOID(check_ld(lda, trans_a == Transpose::no ? k : m, "lda"));
  PEPITA_TRY_VOID(check_ld(ldb, trans_b == Transpose::no ? n : k, "ldb"));
  PEPITA_TRY_VOID(check_ld(ldc, n, "ldc"));
  if (m == 0 || n == 0) return {};
  if (c == nullptr || (k > 0 && alpha != 0.0f && (a == nullptr || b == nullptr))) {
    return fail(ErrorCode::InvalidArgument, "sgemm: null matrix pointer for a non-empty operand");
  }
  const Operands op{trans_a, trans_b, alpha, beta, a, lda, b, ldb, c, ldc};
  if (k == 0 || alpha == 0.0f) {
    scale_c(op, 0, m, 0, n);
    return {};
  }
  const GemmShape& g = detail::active_kernels().gemm;
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  // Below ~4 MFLOP the fork/join costs more than a second core saves.
  if (options.scheduler == nullptr || options.scheduler->worker_count() <= 1 || flops < 4.0e6) {
    return gemm_serial(g, op, m, n, k);
  }
  return gemm_parallel(g, op, m, n, k, *options.scheduler);
}

}  // namespace pepita::simd
