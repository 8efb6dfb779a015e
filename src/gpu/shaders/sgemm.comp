#version 450
// C[M x N] = alpha * A[M x K] * B[K x N] + beta * C, row-major. Tiled in shared memory: each
// 16 x 16 workgroup computes a 64 x 64 block of C, staging 64 x 16 of A and 16 x 64 of B per step;
// each invocation keeps a 4 x 4 register tile at rows ty + 16 i, cols tx + 16 j (interleaved so
// neighbouring invocations read neighbouring shared-memory words and write neighbouring C words).
// Out-of-range tile elements load as zero, so any M, N, K works. beta == 0 does not read C.
layout(local_size_x = 16, local_size_y = 16) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params { uint M; uint N; uint K; float alpha; float beta; } p;

const uint BM = 64u, BN = 64u, BK = 16u, T = 16u;
shared float As[BK][BM + 1u];  // transposed (k-major); +1 pads off bank conflicts on store
shared float Bs[BK][BN];

void main() {
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint tid = ty * T + tx;
  uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
  float acc[4][4];
  for (uint i = 0u; i < 4u; ++i)
    for (uint j = 0u; j < 4u; ++j) acc[i][j] = 0.0;

  for (uint k0 = 0u; k0 < p.K; k0 += BK) {
    for (uint l = 0u; l < 4u; ++l) {
      uint e = tid + l * 256u;
      uint m = e / BK, k = e % BK;  // 16 consecutive invocations read one row run of A
      uint gr = row0 + m, gk = k0 + k;
      As[k][m] = (gr < p.M && gk < p.K) ? a[gr * p.K + gk] : 0.0;
      uint kb = e / BN, n = e % BN;  // 64 consecutive invocations read one row run of B
      uint gkb = k0 + kb, gc = col0 + n;
      Bs[kb][n] = (gkb < p.K && gc < p.N) ? b[gkb * p.N + gc] : 0.0;
    }
    barrier();
    for (uint k = 0u; k < BK; ++k) {
      float ar[4], br[4];
      for (uint i = 0u; i < 4u; ++i) ar[i] = As[k][ty + i * T];
      for (uint j = 0u; j < 4u; ++j) br[j] = Bs[k][tx + j * T];
      for (uint i = 0u; i < 4u; ++i)
        for (uint j = 0u; j < 4u; ++j) acc[i][j] = fma(ar[i], br[j], acc[i][j]);
    }
    barrier();
  }

  for (uint i = 0u; i < 4u; ++i) {
    uint r = row0 + ty + i * T;
    if (r >= p.M) continue;
    for (uint j = 0u; j < 4u; ++j) {
      uint col = col0 + tx + j * T;
      if (col >= p.N) continue;
      uint idx = r * p.N + col;
      float v = p.alpha * acc[i][j];
      c[idx] = p.beta == 0.0 ? v : fma(p.beta, c[idx], v);
    }
  }
}
