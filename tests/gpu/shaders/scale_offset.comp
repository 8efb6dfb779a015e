#version 450
// Test "user" kernel loaded from a .spv file: y[i] = x[i] * SCALE + offset, SCALE a
// specialization constant (id 1), offset a push constant, workgroup size spec constant id 0.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const float SCALE = 1.0;
layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };
layout(push_constant) uniform Params { uint n; float offset; } p;

void main() {
  uint i = gl_GlobalInvocationID.x;
  if (i < p.n) y[i] = x[i] * SCALE + p.offset;
}
