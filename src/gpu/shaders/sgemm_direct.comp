#version 450
// C[M x N] = alpha * A[M x K] * B[K x N] + beta * C, row-major, without shared memory or
// barriers: for CPU Vulkan devices (lavapipe), where workgroup barriers are emulated by switching
// between invocations and dominate the tiled kernel's time, and the CPU caches do the tiling.
// Each invocation computes 8 rows of one column; neighbouring invocations take neighbouring
// columns so B loads are contiguous across SIMD lanes. Rows past M are clamped for the loads and
// skipped for the stores, keeping the inner loop branch-free.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(push_constant) uniform Params { uint M; uint N; uint K; float alpha; float beta; } p;

const uint R = 8u;

void main() {
  uint col = gl_GlobalInvocationID.x;
  if (col >= p.N) return;
  uint r0 = gl_WorkGroupID.y * R;
  uint rowoff[R];
  for (uint i = 0u; i < R; ++i) rowoff[i] = min(r0 + i, p.M - 1u) * p.K;
  float acc[R];
  for (uint i = 0u; i < R; ++i) acc[i] = 0.0;
  for (uint k = 0u; k < p.K; ++k) {
    float bv = b[k * p.N + col];
    for (uint i = 0u; i < R; ++i) acc[i] = fma(a[rowoff[i] + k], bv, acc[i]);
  }
  for (uint i = 0u; i < R; ++i) {
    uint r = r0 + i;
    if (r >= p.M) break;
    uint idx = r * p.N + col;
    float v = p.alpha * acc[i];
    c[idx] = p.beta == 0.0 ? v : fma(p.beta, c[idx], v);
  }
}
