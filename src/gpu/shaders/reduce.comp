#version 450
// One pass of a two-pass reduction (sum or max): workgroup g folds a grid-stride slice of
// in[0, n) into out[g] through a shared-memory tree. The host runs it once over the data and once
// with a single group over the partials.
layout(constant_id = 0) const uint WG = 256;  // power of two
layout(local_size_x_id = 0) in;
layout(std430, set = 0, binding = 0) readonly buffer In { float v[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float o[]; };
layout(push_constant) uniform Params { uint n; uint op; } p;  // op: 0 sum, 1 max

shared float s[WG];

float combine(float x, float y) { return p.op == 0u ? x + y : max(x, y); }

void main() {
  uint lid = gl_LocalInvocationID.x;
  uint stride = gl_NumWorkGroups.x * WG;
  float acc = p.op == 0u ? 0.0 : uintBitsToFloat(0xff800000u);  // -inf
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) acc = combine(acc, v[i]);
  s[lid] = acc;
  barrier();
  for (uint h = WG / 2u; h > 0u; h >>= 1u) {
    if (lid < h) s[lid] = combine(s[lid], s[lid + h]);
    barrier();
  }
  if (lid == 0u) o[gl_WorkGroupID.x] = s[0];
}
