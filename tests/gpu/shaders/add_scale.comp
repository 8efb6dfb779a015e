#version 450
// Shader-task test kernel: o[i] = (a[i] + b[i]) * p.scale and counts[i] += i for i < p.n;
// four storage buffers and an 8-byte push-constant block, 64 invocations per workgroup.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer Out { float o[]; };
layout(std430, set = 0, binding = 3) buffer Counts { uint counts[]; };
layout(push_constant) uniform Params { uint n; float scale; } p;

void main() {
  uint i = gl_GlobalInvocationID.x;
  if (i < p.n) {
    o[i] = (a[i] + b[i]) * p.scale;
    counts[i] += i;
  }
}
