// The vector-length-agnostic bodies of pepita's f32/f64 kernels, written once over a small
// traits interface (Ops<float>, Ops<double>) that each ISA translation unit defines: scalar
// (W = 1), AVX2 (W = 8) and AVX-512 (W = 16).
//
// Include this file INSIDE a per-ISA namespace, after the traits, and only from that ISA's .cpp:
// every function here must get a distinct symbol per ISA, otherwise the linker could merge an
// AVX-512 instantiation into the scalar path. For the same reason the bodies call no inline
// standard-library function (only builtins and intrinsics).
//
// Traits contract (E = float or double): V (vector), M (lane mask), W (lanes); loadu, storeu,
// load_tail(p, n, fill) / store_tail(p, v, n) for 0 < n < W; set1, add, sub, mul, div, fmadd(a,
// b, c) = a*b + c, max/min (return the second operand when either is NaN, like maxps), abs;
// hsum, hmax, hmin; cmp_unord(a) (a is NaN), cmp_lt, cmp_eq, mor, any, first (lowest set lane),
// blend(m, a, b) = m ? b : a. Float only: round (to nearest even), pow2i(n) = 2^n for integral n
// in [-126, 127], widen(v, lo, hi) to two Ops<double> vectors.

template <class E>
using V_ = typename Ops<E>::V;

// ---------- reductions ----------

// Elements before p reaches a W-element boundary (0 when aligned). Peeling them off long loops
// keeps the main loop's loads/stores of p from splitting cache lines (64-byte vectors at
// malloc's 16-byte alignment would split on every access).
template <class E>
std::size_t head_to_align(const E* p, std::size_t n) {
  constexpr std::size_t W = Ops<E>::W;
  if (W == 1 || n < 8 * W) return 0;
  // SAFETY: the address is only inspected for its alignment, never turned back into a pointer.
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  const std::size_t mis = (addr / sizeof(E)) % W;
  return addr % sizeof(E) != 0 || mis == 0 ? 0 : W - mis;
}

template <class E>
E dot_impl(const E* x, const E* y, std::size_t n) {
  using O = Ops<E>;
  constexpr std::size_t W = O::W;
  auto a0 = O::set1(0), a1 = O::set1(0), a2 = O::set1(0), a3 = O::set1(0);
  std::size_t i = head_to_align(x, n);
  if (i > 0) a3 = O::fmadd(O::load_tail(x, i, 0), O::load_tail(y, i, 0), a3);
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = O::fmadd(O::loadu(x + i), O::loadu(y + i), a0);
    a1 = O::fmadd(O::loadu(x + i + W), O::loadu(y + i + W), a1);
    a2 = O::fmadd(O::loadu(x + i + 2 * W), O::loadu(y + i + 2 * W), a2);
    a3 = O::fmadd(O::loadu(x + i + 3 * W), O::loadu(y + i + 3 * W), a3);
  }
  for (; i + W <= n; i += W) a0 = O::fmadd(O::loadu(x + i), O::loadu(y + i), a0);
  if (i < n) a1 = O::fmadd(O::load_tail(x + i, n - i, 0), O::load_tail(y + i, n - i, 0), a1);
  return O::hsum(O::add(O::add(a0, a1), O::add(a2, a3)));
}

template <class E>
E sum_impl(const E* x, std::size_t n) {
  using O = Ops<E>;
  constexpr std::size_t W = O::W;
  auto a0 = O::set1(0), a1 = O::set1(0), a2 = O::set1(0), a3 = O::set1(0);
  std::size_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    a0 = O::add(a0, O::loadu(x + i));
    a1 = O::add(a1, O::loadu(x + i + W));
    a2 = O::add(a2, O::loadu(x + i + 2 * W));
    a3 = O::add(a3, O::loadu(x + i + 3 * W));
  }
  for (; i + W <= n; i += W) a0 = O::add(a0, O::loadu(x + i));
  if (i < n) a1 = O::add(a1, O::load_tail(x + i, n - i, 0));
  return O::hsum(O::add(O::add(a0, a1), O::add(a2, a3)));
}

template <class E>
E sumsq_impl(const E* x, std::size_t n) {
  return dot_impl<E>(x, x, n);
}

// Sum of squares of f32 values accumulated in f64: exact products, no overflow for any finite f32.
inline double sumsq_f32_as_f64_impl(const float* x, std::size_t n) {
  using O = Ops<float>;
  using D = Ops<double>;
  constexpr std::size_t W = O::W;
  auto a0 = D::set1(0), a1 = D::set1(0), a2 = D::set1(0), a3 = D::set1(0);
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    V_<double> lo, hi, lo2, hi2;
    O::widen(O::loadu(x + i), lo, hi);
    O::widen(O::loadu(x + i + W), lo2, hi2);
    a0 = D::fmadd(lo, lo, a0);
    a1 = D::fmadd(hi, hi, a1);
    a2 = D::fmadd(lo2, lo2, a2);
    a3 = D::fmadd(hi2, hi2, a3);
  }
  for (; i < n; i += W) {
    const std::size_t rem = n - i;
    V_<double> lo, hi;
    O::widen(rem >= W ? O::loadu(x + i) : O::load_tail(x + i, rem, 0), lo, hi);
    a0 = D::fmadd(lo, lo, a0);
    a1 = D::fmadd(hi, hi, a1);
  }
  return D::hsum(D::add(D::add(a0, a1), D::add(a2, a3)));
}

// max |x_i| (NaN-propagating), for the scaled fallback of the f64 norm.
inline double amax_f64_impl(const double* x, std::size_t n) {
  using O = Ops<double>;
  constexpr std::size_t W = O::W;
  auto m = O::set1(0);
  auto nan = O::cmp_unord(O::set1(0));
  std::size_t i = 0;
  for (; i + W <= n; i += W) {
    auto v = O::abs(O::loadu(x + i));
    nan = O::mor(nan, O::cmp_unord(v));
    m = O::max(m, v);
  }
  if (i < n) {
    auto v = O::abs(O::load_tail(x + i, n - i, 0));
    nan = O::mor(nan, O::cmp_unord(v));
    m = O::max(m, v);
  }
  return O::any(nan) ? __builtin_nan("") : O::hmax(m);
}

template <bool IsMax>
float extreme_impl(const float* x, std::size_t n) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  const float fill = IsMax ? -__builtin_inff() : __builtin_inff();
  auto m0 = O::set1(fill), m1 = O::set1(fill);
  auto nan = O::cmp_unord(O::set1(0));
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    auto v0 = O::loadu(x + i);
    auto v1 = O::loadu(x + i + W);
    nan = O::mor(nan, O::mor(O::cmp_unord(v0), O::cmp_unord(v1)));
    m0 = IsMax ? O::max(m0, v0) : O::min(m0, v0);
    m1 = IsMax ? O::max(m1, v1) : O::min(m1, v1);
  }
  for (; i < n; i += W) {
    auto v = n - i >= W ? O::loadu(x + i) : O::load_tail(x + i, n - i, fill);
    nan = O::mor(nan, O::cmp_unord(v));
    m0 = IsMax ? O::max(m0, v) : O::min(m0, v);
  }
  if (O::any(nan)) return __builtin_nanf("");
  return IsMax ? O::hmax(O::max(m0, m1)) : O::hmin(O::min(m0, m1));
}

// First index holding a NaN if any, else the first index of the maximum.
inline std::size_t argmax_impl(const float* x, std::size_t n) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  const float m = extreme_impl<true>(x, n);
  const bool want_nan = m != m;
  const auto target = O::set1(m);
  for (std::size_t i = 0; i < n; i += W) {
    auto v = n - i >= W ? O::loadu(x + i) : O::load_tail(x + i, n - i, 0);
    auto hit = want_nan ? O::cmp_unord(v) : O::cmp_eq(v, target);
    if (O::any(hit)) {
      const std::size_t idx = i + O::first(hit);
      if (idx < n) return idx;  // a zero-filled tail lane can match m == 0
    }
  }
  return 0;  // unreachable: m is one of the elements
}

inline void cosine_parts_impl(const float* x, const float* y, std::size_t n, float* out) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  auto xy0 = O::set1(0), xx0 = O::set1(0), yy0 = O::set1(0);
  auto xy1 = O::set1(0), xx1 = O::set1(0), yy1 = O::set1(0);
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    auto a0 = O::loadu(x + i), b0 = O::loadu(y + i);
    auto a1 = O::loadu(x + i + W), b1 = O::loadu(y + i + W);
    xy0 = O::fmadd(a0, b0, xy0);
    xx0 = O::fmadd(a0, a0, xx0);
    yy0 = O::fmadd(b0, b0, yy0);
    xy1 = O::fmadd(a1, b1, xy1);
    xx1 = O::fmadd(a1, a1, xx1);
    yy1 = O::fmadd(b1, b1, yy1);
  }
  for (; i < n; i += W) {
    const std::size_t rem = n - i;
    auto a = rem >= W ? O::loadu(x + i) : O::load_tail(x + i, rem, 0);
    auto b = rem >= W ? O::loadu(y + i) : O::load_tail(y + i, rem, 0);
    xy0 = O::fmadd(a, b, xy0);
    xx0 = O::fmadd(a, a, xx0);
    yy0 = O::fmadd(b, b, yy0);
  }
  out[0] = O::hsum(O::add(xy0, xy1));
  out[1] = O::hsum(O::add(xx0, xx1));
  out[2] = O::hsum(O::add(yy0, yy1));
}

// ---------- element-wise ----------

// Applies f to each W-wide chunk; out may alias the inputs exactly (loads precede the store).
template <class F>
inline void map_impl(float* out, std::size_t n, F f) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    auto r0 = f(i, W);
    auto r1 = f(i + W, W);
    O::storeu(out + i, r0);
    O::storeu(out + i + W, r1);
  }
  for (; i + W <= n; i += W) O::storeu(out + i, f(i, W));
  if (i < n) O::store_tail(out + i, f(i, n - i), n - i);
}

inline V_<float> ld(const float* p, std::size_t count) {
  using O = Ops<float>;
  return count == O::W ? O::loadu(p) : O::load_tail(p, count, 0);
}

template <class E>
void axpy_impl(E alpha, const E* x, E* y, std::size_t n) {
  using O = Ops<E>;
  constexpr std::size_t W = O::W;
  const auto a = O::set1(alpha);
  std::size_t i = head_to_align(y, n);
  if (i > 0) O::store_tail(y, O::fmadd(a, O::load_tail(x, i, 0), O::load_tail(y, i, 0)), i);
  for (; i + 4 * W <= n; i += 4 * W) {
    auto r0 = O::fmadd(a, O::loadu(x + i), O::loadu(y + i));
    auto r1 = O::fmadd(a, O::loadu(x + i + W), O::loadu(y + i + W));
    auto r2 = O::fmadd(a, O::loadu(x + i + 2 * W), O::loadu(y + i + 2 * W));
    auto r3 = O::fmadd(a, O::loadu(x + i + 3 * W), O::loadu(y + i + 3 * W));
    O::storeu(y + i, r0);
    O::storeu(y + i + W, r1);
    O::storeu(y + i + 2 * W, r2);
    O::storeu(y + i + 3 * W, r3);
  }
  for (; i + W <= n; i += W) O::storeu(y + i, O::fmadd(a, O::loadu(x + i), O::loadu(y + i)));
  if (i < n) {
    const std::size_t r = n - i;
    O::store_tail(y + i, O::fmadd(a, O::load_tail(x + i, r, 0), O::load_tail(y + i, r, 0)), r);
  }
}

inline void scale_impl(float alpha, const float* x, float* out, std::size_t n) {
  using O = Ops<float>;
  const auto a = O::set1(alpha);
  map_impl(out, n, [&](std::size_t i, std::size_t c) { return O::mul(a, ld(x + i, c)); });
}

inline void add_impl(const float* x, const float* y, float* out, std::size_t n) {
  using O = Ops<float>;
  map_impl(out, n,
           [&](std::size_t i, std::size_t c) { return O::add(ld(x + i, c), ld(y + i, c)); });
}

inline void add_f64_impl(const double* x, const double* y, double* out, std::size_t n) {
  using O = Ops<double>;
  constexpr std::size_t W = O::W;
  std::size_t i = 0;
  // Both vectors of a step are loaded before either is stored, so out == x or out == y is fine.
  for (; i + 2 * W <= n; i += 2 * W) {
    auto r0 = O::add(O::loadu(x + i), O::loadu(y + i));
    auto r1 = O::add(O::loadu(x + i + W), O::loadu(y + i + W));
    O::storeu(out + i, r0);
    O::storeu(out + i + W, r1);
  }
  for (; i + W <= n; i += W) O::storeu(out + i, O::add(O::loadu(x + i), O::loadu(y + i)));
  if (i < n)
    O::store_tail(out + i, O::add(O::load_tail(x + i, n - i, 0), O::load_tail(y + i, n - i, 0)),
                  n - i);
}

// Cache-blocked element-by-element transpose: 32 x 32 tiles (4 KiB in, 4 KiB out) so each tile's
// reads and writes stay in L1. The scalar level's kernel and the edge handler of the others.
inline void transpose_block(const float* in, std::size_t cols, float* out, std::size_t rows,
                            std::size_t r0, std::size_t r1, std::size_t c0, std::size_t c1) {
  for (std::size_t i = r0; i < r1; ++i)
    for (std::size_t j = c0; j < c1; ++j) out[j * rows + i] = in[i * cols + j];
}

inline void transpose_blocked_impl(const float* in, std::size_t rows, std::size_t cols,
                                   float* out) {
  constexpr std::size_t B = 32;
  for (std::size_t i = 0; i < rows; i += B)
    for (std::size_t j = 0; j < cols; j += B)
      transpose_block(in, cols, out, rows, i, i + B < rows ? i + B : rows, j,
                      j + B < cols ? j + B : cols);
}

inline void mul_impl(const float* x, const float* y, float* out, std::size_t n) {
  using O = Ops<float>;
  map_impl(out, n,
           [&](std::size_t i, std::size_t c) { return O::mul(ld(x + i, c), ld(y + i, c)); });
}

inline void fma_impl(const float* x, const float* y, const float* z, float* out, std::size_t n) {
  using O = Ops<float>;
  map_impl(out, n, [&](std::size_t i, std::size_t c) {
    return O::fmadd(ld(x + i, c), ld(y + i, c), ld(z + i, c));
  });
}

inline void relu_impl(const float* x, float* out, std::size_t n) {
  using O = Ops<float>;
  const auto zero = O::set1(0);
  // x < 0 is false for NaN and -0, so both pass through unchanged.
  map_impl(out, n, [&](std::size_t i, std::size_t c) {
    auto v = ld(x + i, c);
    return O::blend(O::cmp_lt(v, zero), v, zero);
  });
}

// e^x for every float x: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor
// polynomial (truncation < 0.1 ulp), then 2^n applied in two halves so subnormal results and
// overflow to +inf come out right. About 2 ulp; NaN in, NaN out.
inline V_<float> exp_impl(V_<float> x) {
  using O = Ops<float>;
  auto xc = O::min(O::max(x, O::set1(-104.0f)), O::set1(89.0f));
  auto n = O::round(O::mul(xc, O::set1(1.44269504088896341f)));
  auto r = O::fmadd(n, O::set1(-0.693145751953125f), xc);  // ln2 high part: exact n*ln2_hi
  r = O::fmadd(n, O::set1(-1.428606765330187e-06f), r);    // ln2 low part
  auto p = O::set1(1.0f / 5040.0f);
  p = O::fmadd(p, r, O::set1(1.0f / 720.0f));
  p = O::fmadd(p, r, O::set1(1.0f / 120.0f));
  p = O::fmadd(p, r, O::set1(1.0f / 24.0f));
  p = O::fmadd(p, r, O::set1(1.0f / 6.0f));
  p = O::fmadd(p, r, O::set1(0.5f));
  p = O::fmadd(p, r, O::set1(1.0f));
  p = O::fmadd(p, r, O::set1(1.0f));
  // n in [-150, 129]: floor(n/2) and the rest are both in [-75, 65], valid 2^k exponents.
  auto n1 = O::round(O::sub(O::mul(n, O::set1(0.5f)), O::set1(0.25f)));
  auto n2 = O::sub(n, n1);
  auto result = O::mul(O::mul(p, O::pow2i(n1)), O::pow2i(n2));
  return O::blend(O::cmp_unord(x), result, x);
}

inline void softmax_impl(const float* x, float* out, std::size_t n) {
  using O = Ops<float>;
  const float m = extreme_impl<true>(x, n);
  const auto vm = O::set1(m);
  // With m = NaN, +inf, or -inf (all -inf) every x - m below is NaN for at least one element and
  // the NaN sum spreads to all outputs, matching the f64 reference.
  auto s0 = O::set1(0), s1 = O::set1(0);
  constexpr std::size_t W = O::W;
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    auto e0 = exp_impl(O::sub(O::loadu(x + i), vm));
    auto e1 = exp_impl(O::sub(O::loadu(x + i + W), vm));
    O::storeu(out + i, e0);
    O::storeu(out + i + W, e1);
    s0 = O::add(s0, e0);
    s1 = O::add(s1, e1);
  }
  for (; i < n; i += W) {
    const std::size_t c = n - i >= W ? W : n - i;
    // Tail lanes are filled with -inf: exp(-inf - m) = 0 adds nothing to the sum.
    auto v = c == W ? O::loadu(x + i) : O::load_tail(x + i, c, -__builtin_inff());
    auto e = exp_impl(O::sub(v, vm));
    if (c == W) {
      O::storeu(out + i, e);
    } else {
      O::store_tail(out + i, e, c);
    }
    s0 = O::add(s0, e);
  }
  const auto inv = O::set1(1.0f / O::hsum(O::add(s0, s1)));
  map_impl(out, n, [&](std::size_t j, std::size_t c) { return O::mul(ld(out + j, c), inv); });
}

// tanh-form GELU: 0.5 x (1 + tanh(z/2)) == x * sigmoid(z), z = 2 sqrt(2/pi) (x + 0.044715 x^3).
inline void gelu_impl(const float* x, float* out, std::size_t n) {
  using O = Ops<float>;
  const auto c1 = O::set1(1.5957691216057308f);   // 2 sqrt(2/pi)
  const auto c2 = O::set1(0.07135481627260025f);  // 2 sqrt(2/pi) * 0.044715
  const auto one = O::set1(1.0f);
  const auto neg_big = O::set1(-3.0e38f);
  map_impl(out, n, [&](std::size_t i, std::size_t c) {
    auto v = ld(x + i, c);
    auto z = O::mul(v, O::fmadd(O::mul(v, v), c2, c1));
    auto r = O::div(v, O::add(one, exp_impl(O::sub(O::set1(0), z))));
    // x -> -inf: the limit is -0 (the formula gives -inf / inf = NaN).
    return O::blend(O::cmp_lt(v, neg_big), r, O::set1(-0.0f));
  });
}

inline void layer_norm_impl(const float* x, const float* gamma, const float* beta, float eps,
                            float* out, std::size_t n) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  const float mean = sum_impl<float>(x, n) / static_cast<float>(n);
  const auto vmean = O::set1(mean);
  // Two-pass variance: no catastrophic cancellation of E[x^2] - E[x]^2.
  auto q0 = O::set1(0), q1 = O::set1(0);
  std::size_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    auto d0 = O::sub(O::loadu(x + i), vmean);
    auto d1 = O::sub(O::loadu(x + i + W), vmean);
    q0 = O::fmadd(d0, d0, q0);
    q1 = O::fmadd(d1, d1, q1);
  }
  for (; i < n; i += W) {
    const std::size_t c = n - i >= W ? W : n - i;
    auto d = O::sub(c == W ? O::loadu(x + i) : O::load_tail(x + i, c, mean), vmean);
    q0 = O::fmadd(d, d, q0);
  }
  const float var = O::hsum(O::add(q0, q1)) / static_cast<float>(n);
  const auto rstd = O::set1(1.0f / __builtin_sqrtf(var + eps));
  const auto one = O::set1(1.0f);
  const auto zero = O::set1(0.0f);
  map_impl(out, n, [&](std::size_t j, std::size_t c) {
    auto t = O::mul(O::sub(ld(x + j, c), vmean), rstd);
    auto g = gamma != nullptr ? ld(gamma + j, c) : one;
    auto b = beta != nullptr ? ld(beta + j, c) : zero;
    return O::fmadd(t, g, b);
  });
}

// ---------- GEMM micro-kernel ----------

// MR x (2W) tile of C: per k, two vector loads of packed B and MR broadcasts of packed A feed
// 2*MR independent FMA chains (enough to cover FMA latency x throughput on every level).
template <std::size_t MR>
void gemm_micro_impl(std::size_t kc, const float* a, const float* b, float* c, std::size_t ldc,
                     float beta) {
  using O = Ops<float>;
  constexpr std::size_t W = O::W;
  V_<float> acc[MR][2];
#pragma GCC unroll 16
  for (std::size_t i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = O::set1(0);
  for (std::size_t k = 0; k < kc; ++k) {
    const auto b0 = O::loadu(b);
    const auto b1 = O::loadu(b + W);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      const auto ai = O::set1(a[i]);
      acc[i][0] = O::fmadd(ai, b0, acc[i][0]);
      acc[i][1] = O::fmadd(ai, b1, acc[i][1]);
    }
    a += MR;
    b += 2 * W;
  }
  if (beta == 0.0f) {
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      O::storeu(c + i * ldc, acc[i][0]);
      O::storeu(c + i * ldc + W, acc[i][1]);
    }
  } else {
    const auto vb = O::set1(beta);
#pragma GCC unroll 16
    for (std::size_t i = 0; i < MR; ++i) {
      O::storeu(c + i * ldc, O::fmadd(vb, O::loadu(c + i * ldc), acc[i][0]));
      O::storeu(c + i * ldc + W, O::fmadd(vb, O::loadu(c + i * ldc + W), acc[i][1]));
    }
  }
}

// Fills the table entries every level shares; the caller adds dot_i8, dot_bf16 and gemm.
constexpr Kernels generic_table() {
  Kernels k{};
  k.dot_f32 = &dot_impl<float>;
  k.dot_f64 = &dot_impl<double>;
  k.axpy_f32 = &axpy_impl<float>;
  k.axpy_f64 = &axpy_impl<double>;
  k.scale_f32 = &scale_impl;
  k.add_f32 = &add_impl;
  k.mul_f32 = &mul_impl;
  k.fma_f32 = &fma_impl;
  k.sum_f32 = &sum_impl<float>;
  k.sum_f64 = &sum_impl<double>;
  k.max_f32 = &extreme_impl<true>;
  k.min_f32 = &extreme_impl<false>;
  k.argmax_f32 = &argmax_impl;
  k.sumsq_f32_as_f64 = &sumsq_f32_as_f64_impl;
  k.sumsq_f64 = &sumsq_impl<double>;
  k.amax_f64 = &amax_f64_impl;
  k.cosine_parts_f32 = &cosine_parts_impl;
  k.softmax_f32 = &softmax_impl;
  k.relu_f32 = &relu_impl;
  k.gelu_f32 = &gelu_impl;
  k.layer_norm_f32 = &layer_norm_impl;
  k.add_f64 = &add_f64_impl;
  k.transpose_f32 = &transpose_blocked_impl;
  return k;
}
