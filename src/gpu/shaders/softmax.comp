#version 450
// Row-wise numerically stable softmax of a rows x cols row-major matrix:
// out[r][c] = exp(in[r][c] - max_r) / sum_c exp(in[r][c] - max_r). One workgroup per row
// (grid-stride over rows), shared-memory tree reductions for the max and the sum.
layout(constant_id = 0) const uint WG = 256;  // power of two
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer In { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float y[]; };
layout(push_constant) uniform Params { uint rows; uint cols; } p;

shared float s[WG];

void main() {
  uint lid = gl_LocalInvocationID.x;
  for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
    uint base = r * p.cols;
    float m = uintBitsToFloat(0xff800000u);
    for (uint c = lid; c < p.cols; c += WG) m = max(m, x[base + c]);
    s[lid] = m;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1u) {
      if (lid < h) s[lid] = max(s[lid], s[lid + h]);
      barrier();
    }
    m = s[0];
    barrier();
    float sum = 0.0;
    for (uint c = lid; c < p.cols; c += WG) sum += exp(x[base + c] - m);
    s[lid] = sum;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1u) {
      if (lid < h) s[lid] += s[lid + h];
      barrier();
    }
    float inv = 1.0 / s[0];
    barrier();  // s is reused by the next row
    for (uint c = lid; c < p.cols; c += WG) y[base + c] = exp(x[base + c] - m) * inv;
  }
}
