#version 450
// Reflection test module (never dispatched): a push-constant block whose one member nests 20
// structs deep, past the bound reflection sizes types to (16 levels): the block has no size.
layout(local_size_x = 1) in;
struct S1 {
  float x;
};
struct S2 {
  S1 s;
};
struct S3 {
  S2 s;
};
struct S4 {
  S3 s;
};
struct S5 {
  S4 s;
};
struct S6 {
  S5 s;
};
struct S7 {
  S6 s;
};
struct S8 {
  S7 s;
};
struct S9 {
  S8 s;
};
struct S10 {
  S9 s;
};
struct S11 {
  S10 s;
};
struct S12 {
  S11 s;
};
struct S13 {
  S12 s;
};
struct S14 {
  S13 s;
};
struct S15 {
  S14 s;
};
struct S16 {
  S15 s;
};
struct S17 {
  S16 s;
};
struct S18 {
  S17 s;
};
struct S19 {
  S18 s;
};
struct S20 {
  S19 s;
};
layout(push_constant) uniform Push {
  S20 s;
} pc;
layout(std430, set = 0, binding = 0) buffer Out { float values[]; };

void main() {
  values[gl_GlobalInvocationID.x] = pc.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.s.x;
}
