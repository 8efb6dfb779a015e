#version 450
// Test kernel that runs for a chosen time: each invocation iterates a dependent multiply-add
// `iters` times (push constant; llvmpipe caps loops at 65535), and the workgroup count scales
// the total, so the executor's cancellation and timeout tests keep the device busy for a
// calibrated interval.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Out { float v[]; };
layout(push_constant) uniform Params { uint iters; } p;

void main() {
  uint i = gl_GlobalInvocationID.x;
  float x = float(i);
  for (uint k = 0; k < p.iters; ++k) x = x * 0.9999999 + 1.0;
  if (i < v.length()) v[i] = x;
}
