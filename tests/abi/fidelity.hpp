#pragma once
// Compile-time comparison of our ABI structs with the kernel's UAPI structs: same size, alignment,
// and for every field the same offset and size. A mismatch fails the build, naming the field.

#include <cstddef>

#define PEPITA_SAME_LAYOUT(ours, theirs)                                         \
  static_assert(sizeof(ours) == sizeof(theirs), "sizeof " #ours " != " #theirs); \
  static_assert(alignof(ours) == alignof(theirs), "alignof " #ours " != " #theirs)

#define PEPITA_SAME_FIELD(ours, theirs, our_field, their_field)                      \
  static_assert(offsetof(ours, our_field) == offsetof(theirs, their_field),          \
                "offsetof " #ours "::" #our_field " != " #theirs "::" #their_field); \
  static_assert(sizeof(ours::our_field) == sizeof(theirs::their_field),              \
                "sizeof " #ours "::" #our_field " != " #theirs "::" #their_field)

#define PEPITA_SAME_CONSTANT(ours, theirs)                                                        \
  static_assert(static_cast<unsigned long long>(ours) == static_cast<unsigned long long>(theirs), \
                #ours " != " #theirs)
