# libFuzzer targets, two ways from the same sources:
#
# - PEPITA_FUZZ=ON (`make fuzz`: build-fuzz configured with clang++-19): every target of this
#   configuration is compiled with -fsanitize=fuzzer-no-link,address,undefined, i.e. libFuzzer's
#   full instrumentation (inline 8-bit edge counters, PC table, trace-cmp) plus ASan/UBSan, and
#   each fuzz target links libFuzzer's driver. Only the fuzz targets and what they link are built
#   (target `pepita_fuzz`); scripts/fuzz runs them and prints exec/s and covered edges.
#   clang >= 16 is needed: clang 14 cannot compile libstdc++ 12's <expected>.
# - Any other build (g++, `make test`, the ASan CI build): each target becomes <name>_replay, the
#   fuzz function behind a small driver (tests/fuzz/replay_main.cc) registered with CTest as
#   <TEST>, which runs every input of the target's seed corpus once. Seeds and the reproducers
#   of fixed bugs stay regression tests under the normal compiler and sanitizers.
#
# pepita_fuzz_target(NAME <exe> TEST <ctest name> LABEL <module> MAX_LEN <bytes>
#                    CORPUS <dir> [DICT <file>] SOURCES <files...> [LIBS <targets...>]
#                    [DEFINITIONS <defs...>] [OPTIONS <compile options...>])
# LABEL is the module the target fuzzes: its CTest label and, as for the module itself, its only
# private include dir (src/<module>).
option(PEPITA_FUZZ "Build the libFuzzer targets (needs clang >= 16, e.g. clang++-19)" OFF)

if(PEPITA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR CMAKE_CXX_COMPILER_VERSION VERSION_LESS 16)
    message(FATAL_ERROR "PEPITA_FUZZ needs clang++ >= 16 (libstdc++ 12's <expected>); configure "
                        "with -DCMAKE_CXX_COMPILER=clang++-19 -DCMAKE_C_COMPILER=clang-19 "
                        "(Debian 12: apt-get install clang-19 libclang-rt-19-dev)")
  endif()
  if(PEPITA_SANITIZE OR PEPITA_COVERAGE)
    message(FATAL_ERROR "PEPITA_FUZZ brings its own sanitizers: leave PEPITA_SANITIZE and "
                        "PEPITA_COVERAGE off")
  endif()
  # Every library a fuzz target links is instrumented too (coverage guides through it). -O1 -g
  # as libFuzzer's docs advise; asserts stay on; UBSan findings abort so libFuzzer keeps them.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer -O1 -g)
  add_link_options(-fsanitize=address,undefined)
  add_custom_target(pepita_fuzz)
  # One line per target for scripts/fuzz: name, binary, seed corpus, dictionary or -, max_len.
  file(WRITE ${PROJECT_BINARY_DIR}/fuzz/targets.tsv "")
endif()

function(pepita_fuzz_target)
  cmake_parse_arguments(ARG "" "NAME;TEST;LABEL;MAX_LEN;CORPUS;DICT"
    "SOURCES;LIBS;DEFINITIONS;OPTIONS" ${ARGN})
  if(NOT ARG_CORPUS OR NOT IS_DIRECTORY ${ARG_CORPUS})
    message(FATAL_ERROR "pepita_fuzz_target(${ARG_NAME}): CORPUS '${ARG_CORPUS}' is not a folder")
  endif()

  if(PEPITA_FUZZ)
    add_executable(${ARG_NAME} ${ARG_SOURCES})
    target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/include
      ${PROJECT_SOURCE_DIR}/src/${ARG_LABEL})
    target_compile_definitions(${ARG_NAME} PRIVATE ${ARG_DEFINITIONS})
    target_compile_options(${ARG_NAME} PRIVATE ${ARG_OPTIONS})
    target_link_options(${ARG_NAME} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} Threads::Threads)
    set_target_properties(${ARG_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
    add_dependencies(pepita_fuzz ${ARG_NAME})
    if(NOT ARG_DICT)
      set(ARG_DICT -)  # a placeholder: scripts/fuzz splits on tabs, which collapse when empty
    endif()
    file(APPEND ${PROJECT_BINARY_DIR}/fuzz/targets.tsv
      "${ARG_NAME}\t${PROJECT_BINARY_DIR}/fuzz/${ARG_NAME}\t${ARG_CORPUS}\t${ARG_DICT}\t${ARG_MAX_LEN}\n")
    return()
  endif()

  if(NOT PEPITA_BUILD_TESTS)
    return()
  endif()
  set(replay ${ARG_NAME}_replay)
  add_executable(${replay} ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
  target_include_directories(${replay} PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_SOURCE_DIR}/src/${ARG_LABEL})
  target_compile_definitions(${replay} PRIVATE ${ARG_DEFINITIONS})
  target_compile_options(${replay} PRIVATE ${ARG_OPTIONS})
  target_link_libraries(${replay} PRIVATE ${ARG_LIBS} Threads::Threads pepita_build_flags)
  add_test(NAME ${ARG_TEST} COMMAND ${replay} ${ARG_CORPUS})
  set_tests_properties(${ARG_TEST} PROPERTIES TIMEOUT 120 LABELS "${ARG_LABEL};fuzz")
endfunction()
