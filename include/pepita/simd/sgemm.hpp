#pragma once
// Single-precision GEMM, C = alpha op(A) op(B) + beta C, row-major, with the BLIS/GotoBLAS
// structure (Van Zee & van de Geijn, "BLIS: A Framework for Rapidly Instantiating BLAS
// Functionality", TOMS 2015; Goto & van de Geijn, TOMS 2008): B packed per KC x NC block, A
// packed per MC x KC block, an MR x NR register-tile micro-kernel per dispatch level (AVX-512
// 12x32, AVX2 6x16, scalar 4x2; KC = 512, MC = 144, NC = 4096). Parallel runs pack each B block
// once, shared, and spread the MC row blocks over the work-stealing scheduler's workers. Packing
// buffers are cached per thread (those above 2 MiB are freed after each call).
//
//   // C (m x n) = A (m x k) * B (k x n), all row-major and contiguous
//   PEPITA_TRY_VOID(pepita::simd::sgemm(Transpose::no, Transpose::no, m, n, k, 1.0f,
//                                       a, k, b, n, 0.0f, c, n));
//   auto sched = PEPITA_TRY(pepita::scheduler::Scheduler::create());
//   PEPITA_TRY_VOID(pepita::simd::sgemm(..., {.scheduler = sched.get()}));  // parallel

#include <cstddef>
#include <cstdint>

#include "pepita/error.hpp"

namespace pepita::scheduler {
class Scheduler;
}

namespace pepita::simd {

enum class Transpose : std::uint8_t { no, yes };

struct GemmOptions {
  /// Run on this scheduler's workers (the caller waits); nullptr runs on the calling thread.
  scheduler::Scheduler* scheduler = nullptr;
};

/// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major: element (i, j) of a matrix X with
/// leading dimension ldx is x[i * ldx + j]. op(A) is m x k: A is stored m x k (lda >= k) for
/// Transpose::no, k x m (lda >= m) for Transpose::yes; likewise op(B) is k x n from B stored
/// k x n (ldb >= n) or n x k (ldb >= k). ldc >= n. BLAS rules: beta == 0 overwrites C without
/// reading it (NaN in C does not survive); k == 0 or alpha == 0 only scales C by beta.
/// Accuracy: each c_ij is within (k + 2) u sum_p |alpha a_ip b_pj| + u |beta c_ij| of the exact
/// result (u = 2^-24), the dot-product bound with KC-blocked accumulation.
/// Errors: InvalidArgument for a leading dimension below the minimum above or a null matrix
/// pointer with non-zero extent; ResourceExhausted when packing buffers cannot be allocated, or
/// the scheduler's error when a parallel task fails. On error C is unspecified only for
/// scheduler/allocation failures; argument errors leave C untouched.
[[nodiscard]] Result<void> sgemm(Transpose trans_a, Transpose trans_b, std::size_t m, std::size_t n,
                                 std::size_t k, float alpha, const float* a, std::size_t lda,
                                 const float* b, std::size_t ldb, float beta, float* c,
                                 std::size_t ldc, const GemmOptions& options = {});

}  // namespace pepita::simd
