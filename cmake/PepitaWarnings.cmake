# Warnings, sanitizers and coverage flags shared by every pepita target.
add_library(pepita_build_flags INTERFACE)
target_compile_options(pepita_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Wformat=2 -Wimplicit-fallthrough
  $<$<BOOL:${PEPITA_WERROR}>:-Werror>)

if(PEPITA_SANITIZE)
  # libstdc++'s assertions come with the sanitizers: an index past a std::array's or a vector's
  # size, front() of an empty container or error() of a std::expected holding a value aborts,
  # where ASan sees nothing while the bytes read lie inside the same object.
  target_compile_options(pepita_build_flags INTERFACE
    -fsanitize=${PEPITA_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all
    -D_GLIBCXX_ASSERTIONS)
  target_link_options(pepita_build_flags INTERFACE -fsanitize=${PEPITA_SANITIZE})
endif()

if(PEPITA_COVERAGE)
  target_compile_options(pepita_build_flags INTERFACE --coverage -O0 -g)
  # Linked in although nothing in the library calls them: a test's forked child, which ends with
  # _exit, writes its counters with them (tests/common/child_coverage.hpp, weak references).
  target_link_options(pepita_build_flags INTERFACE --coverage -Wl,-u,__gcov_dump
                      -Wl,-u,__gcov_reset)
endif()
