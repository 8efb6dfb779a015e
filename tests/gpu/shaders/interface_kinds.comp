#version 450
// Reflection test module (never dispatched): a push-constant block with a vector, an array and a
// matrix member, which reflection sizes from the Offset/ArrayStride/MatrixStride decorations, a
// storage buffer and a uniform buffer.
layout(local_size_x = 8, local_size_y = 4) in;
layout(push_constant) uniform Push {
  vec4 v;      // offset 0, 16 bytes
  float a[3];  // offset 16, array stride 4: 12 bytes
  mat4 m;      // offset 32, matrix stride 16: 64 bytes, so the block is 96 bytes
} pc;
layout(std430, set = 0, binding = 0) buffer Out { float values[]; };
layout(std140, set = 0, binding = 1) uniform Params { vec4 scale; };

void main() {
  values[gl_GlobalInvocationID.x] = pc.v.x + pc.a[1] + pc.m[2][2] + scale.x;
}
