// sgemm driver: argument checks, packing, cache blocking and the parallel split. The only
// ISA-specific code is the micro-kernel reached through the active level's GemmShape; packing is
// plain C++ compiled for the baseline (it is O(mk + kn) per block against O(mnk) of FMA work).

#include "pepita/simd/sgemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "pepita/scheduler/parallel.hpp"
#include "pepita/scheduler/scheduler.hpp"
#include "simd/detail/active.hpp"

namespace pepita::simd {
namespace {

using detail::GemmShape;

struct FreeDeleter {
  void operator()(float* p) const noexcept { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

// 64-byte aligned so packed panels start on cache lines (unaligned 64-byte loads split lines).
Result<Buffer> alloc_floats(std::size_t count) {
  const std::size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (p == nullptr) {
    return fail(ErrorCode::ResourceExhausted,
                "sgemm: cannot allocate " + std::to_string(bytes) + " bytes of packing buffer");
  }
  return Buffer(p);
}

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

// A block rows [i0, i0 + mb) x depth [p0, p0 + kb), alpha folded in, as ceil(mb / mr)
// micro-panels of kb columns of mr values; rows past mb are zero.
void pack_a(const Operands& op, std::size_t mr, std::size_t i0, std::size_t p0, std::size_t mb,
            std::size_t kb, float* dst) {
  for (std::size_t ir = 0; ir < mb; ir += mr) {
    const std::size_t rows = std::min(mr, mb - ir);
    float* panel = dst + ir * kb;
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

// The serial algorithm on the C sub-block rows [i0, i1) x columns [j0, j1).
Result<void> gemm_block(const GemmShape& g, const Operands& op, std::size_t k, std::size_t i0,
                        std::size_t i1, std::size_t j0, std::size_t j1) {
  if (i0 >= i1 || j0 >= j1) return {};
  if (k == 0 || op.alpha == 0.0f) {
    scale_c(op, i0, i1, j0, j1);
    return {};
  }
  const std::size_t kc = std::min(g.kc, k);
  const std::size_t mc = std::min(g.mc, round_up(i1 - i0, g.mr));
  const std::size_t nc = std::min(g.nc, round_up(j1 - j0, g.nr));
  Buffer apack = PEPITA_TRY(alloc_floats(mc * kc));
  Buffer bpack = PEPITA_TRY(alloc_floats(kc * nc));
  alignas(64) float edge[16 * 64];  // one micro-tile; mr * nr <= 16 * 64 on every level

  for (std::size_t jc = j0; jc < j1; jc += nc) {
    const std::size_t nb = std::min(nc, j1 - jc);
    for (std::size_t pc = 0; pc < k; pc += kc) {
      const std::size_t kb = std::min(kc, k - pc);
      pack_b(op, g.nr, pc, jc, kb, nb, bpack.get());
      // The first depth block applies beta; later ones accumulate onto it.
      const float beta = pc == 0 ? op.beta : 1.0f;
      for (std::size_t ic = i0; ic < i1; ic += mc) {
        const std::size_t mb = std::min(mc, i1 - ic);
        pack_a(op, g.mr, ic, pc, mb, kb, apack.get());
        for (std::size_t ir = 0; ir < mb; ir += g.mr) {
          const float* ap = apack.get() + ir * kb;
          const std::size_t rows = std::min(g.mr, mb - ir);
          for (std::size_t jr = 0; jr < nb; jr += g.nr) {
            const float* bp = bpack.get() + jr * kb;
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
    }
  }
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
  const GemmShape& g = detail::active_kernels().gemm;

  const std::size_t workers = options.scheduler != nullptr ? options.scheduler->worker_count() : 1;
  const double flops =
      2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  if (workers <= 1 || flops < 2.0e6) return gemm_block(g, op, k, 0, m, 0, n);

  // Independent C panels: no synchronisation inside, each task packs its own blocks. Columns
  // when C is wide (a panel of NC columns costs no extra packing over the serial loop), rows
  // when it is tall. About two panels per worker lets stealing even out a slow core.
  const bool by_cols = n >= m;
  const std::size_t extent = by_cols ? n : m;
  const std::size_t unit = by_cols ? g.nr : g.mr;
  const std::size_t target = std::max<std::size_t>(1, 2 * workers);
  std::size_t panel = round_up((extent + target - 1) / target, unit);
  if (by_cols) panel = std::min(panel, g.nc);
  const std::size_t panels = (extent + panel - 1) / panel;
  std::mutex error_mu;
  std::optional<Error> first_error;
  PEPITA_TRY_VOID(scheduler::parallel_for(
      *options.scheduler, 0, panels,
      [&](std::size_t idx) {
        const std::size_t lo = idx * panel;
        const std::size_t hi = std::min(extent, lo + panel);
        auto r = by_cols ? gemm_block(g, op, k, 0, m, lo, hi) : gemm_block(g, op, k, lo, hi, 0, n);
        if (!r) {
          const std::lock_guard lock(error_mu);
          if (!first_error) first_error = std::move(r.error());
        }
      },
      1));
  if (first_error) return std::unexpected(std::move(*first_error));
  return {};
}

}  // namespace pepita::simd
