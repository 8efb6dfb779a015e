# pepita_fuzz_target(NAME <exe> TEST <ctest name> LABEL <label> MAX_LEN <bytes>
#                    SOURCES <files...> [LIBS <targets...>])
#
# A libFuzzer target, built only where clang's libFuzzer runtime is installed (Debian: clang +
# libclang-rt-14-dev) and only in the non-sanitizer build. clang 14 cannot compile libstdc++ 12's
# std::expected, so g++ compiles the code with ASan/UBSan and -fsanitize-coverage=trace-cmp
# (libFuzzer's value profile then guides it; libFuzzer no longer accepts gcc's trace-pc) and links
# clang's runtime. CTest runs it for a bounded 20 s.
find_program(PEPITA_CLANG NAMES clang clang-14)
if(PEPITA_CLANG)
  execute_process(COMMAND ${PEPITA_CLANG} --print-runtime-dir OUTPUT_VARIABLE pepita_clang_rt_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  set(PEPITA_FUZZ_RUNTIME ${pepita_clang_rt_dir}/libclang_rt.fuzzer-x86_64.a)
endif()

function(pepita_fuzz_target)
  cmake_parse_arguments(ARG "" "NAME;TEST;LABEL;MAX_LEN" "SOURCES;LIBS" ${ARGN})
  if(PEPITA_SANITIZE OR NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    return()
  endif()
  if(NOT PEPITA_FUZZ_RUNTIME OR NOT EXISTS ${PEPITA_FUZZ_RUNTIME})
    message(STATUS "${ARG_LABEL}: no libFuzzer runtime (install clang libclang-rt-14-dev); "
                   "${ARG_NAME} skipped")
    return()
  endif()
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_include_directories(${ARG_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${ARG_NAME} PRIVATE -O1 -g -fno-omit-frame-pointer
    -fsanitize=address,undefined -fsanitize-coverage=trace-cmp)
  target_link_options(${ARG_NAME} PRIVATE -fsanitize=address,undefined)
  target_link_libraries(${ARG_NAME} PRIVATE ${PEPITA_FUZZ_RUNTIME} ${ARG_LIBS} Threads::Threads)
  if(PEPITA_BUILD_TESTS)
    add_test(NAME ${ARG_TEST} COMMAND ${ARG_NAME} -use_value_profile=1 -max_total_time=20
      -max_len=${ARG_MAX_LEN} -rss_limit_mb=2048 -print_final_stats=1)
    set_tests_properties(${ARG_TEST} PROPERTIES TIMEOUT 120 LABELS ${ARG_LABEL})
  endif()
endfunction()
