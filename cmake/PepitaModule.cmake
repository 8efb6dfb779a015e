# pepita_module(NAME <name> [HEADER_ONLY] [DEPS <targets...>] [TEST_DEPS <targets...>]
#               [TEST_FILTER <gtest filter of the cases CTest registers>]
#               [EXCLUDE_DIRS <subdir...>])
#
# Defines the static library pepita_<name> from src/<name>/*.cpp (or an INTERFACE library when
# HEADER_ONLY) less the sources under src/<name>/<subdir>/ for each EXCLUDE_DIRS entry (a module
# builds those as libraries of their own, e.g. its executor adapter in src/<name>/executor/), one GoogleTest binary pepita_<name>_tests from tests/<name>/*.cpp whose cases are
# registered with CTest one by one (pepita_gtest_cases below), and one benchmark executable per
# bench/<name>/*.cpp. Modules are independent targets so a module builds and tests on its own:
# `cmake --build build --target pepita_<name>_tests && ctest --test-dir build -L '^<name>$'`.
# The library, its tests and its benchmarks see only their own private headers: src/<name> is
# their private include dir (not src/), so they write `#include "detail/x.hpp"`, and reaching
# into another module's src/ or detail/ fails to compile. Shared kernel helpers live in core's
# public headers (pepita/core/sys.hpp).
include(GoogleTest)
set(PEPITA_ALL_MODULES "" CACHE INTERNAL "")

# pepita_gtest_cases(<module> <test target> [TIMEOUT <s>] [FILTER <gtest filter>])
#
# Registers every GoogleTest case (TEST, TEST_F, TEST_P instances, rapidcheck's RC_GTEST_PROP) of
# <test target> as its own CTest entry named `<module>.<Suite>.<Case>`, labelled <module>, so ctest
# counts and names a skipped case as skipped (gtest_discover_tests sets SKIP_REGULAR_EXPRESSION
# `[  SKIPPED ]`). Each case runs in a process of its own, so per-process setup (the Vulkan device,
# the local Slurm cluster) is repeated per case. The cases of one module were written to run one
# after another, as they did when the module was one CTest entry (the Slurm cluster and its
# `scancel --user=root`, network namespaces, fixed temp paths, CPU-time and timing thresholds):
# RESOURCE_LOCK <module> keeps them serialized under `ctest -j`, while cases of different modules
# still run in parallel. The cases are listed after each link (POST_BUILD), so ctest never runs a
# stale list; a module whose binary is not built shows as <target>_NOT_BUILT (no label).
function(pepita_gtest_cases module target)
  cmake_parse_arguments(ARG "" "TIMEOUT;FILTER" "" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set(filter_args)
  if(ARG_FILTER)
    set(filter_args TEST_FILTER ${ARG_FILTER})
  endif()
  gtest_discover_tests(${target}
    TEST_PREFIX "${module}."
    EXTRA_ARGS --gtest_color=no
    ${filter_args}
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS ${module} RESOURCE_LOCK ${module} TIMEOUT ${ARG_TIMEOUT})
endfunction()

function(pepita_module)
  cmake_parse_arguments(ARG "HEADER_ONLY" "NAME;TEST_FILTER" "DEPS;TEST_DEPS;BENCH_DEPS;EXCLUDE_DIRS" ${ARGN})
  set(lib pepita_${ARG_NAME})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${ARG_NAME}/*.cpp)
  if(ARG_EXCLUDE_DIRS)
    list(JOIN ARG_EXCLUDE_DIRS "|" exclude_alternatives)
    list(FILTER sources EXCLUDE REGEX "/src/${ARG_NAME}/(${exclude_alternatives})/")
  endif()

  if(ARG_HEADER_ONLY OR NOT sources)
    add_library(${lib} INTERFACE)
    target_include_directories(${lib} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_link_libraries(${lib} INTERFACE ${ARG_DEPS})
  else()
    add_library(${lib} STATIC ${sources})
    target_include_directories(${lib}
      PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
      PRIVATE ${PROJECT_SOURCE_DIR}/src/${ARG_NAME})
    target_link_libraries(${lib} PUBLIC ${ARG_DEPS} PRIVATE $<BUILD_INTERFACE:pepita_build_flags>)
  endif()
  add_library(pepita::${ARG_NAME} ALIAS ${lib})
  target_link_libraries(pepita INTERFACE ${lib})
  set(PEPITA_ALL_MODULES ${PEPITA_ALL_MODULES} ${lib} CACHE INTERNAL "")

  file(GLOB_RECURSE tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/${ARG_NAME}/*.cpp)
  if(PEPITA_BUILD_TESTS AND tests)
    set(test_bin pepita_${ARG_NAME}_tests)
    add_executable(${test_bin} ${tests})
    target_include_directories(${test_bin} PRIVATE ${PROJECT_SOURCE_DIR}/tests
      ${PROJECT_SOURCE_DIR}/src/${ARG_NAME})
    target_link_libraries(${test_bin} PRIVATE ${lib} ${ARG_TEST_DEPS} GTest::gtest GTest::gtest_main
      GTest::gmock rapidcheck rapidcheck_gtest pepita_build_flags)
    target_compile_definitions(${test_bin} PRIVATE
      PEPITA_SOURCE_DIR="${PROJECT_SOURCE_DIR}" PEPITA_BINARY_DIR="${PROJECT_BINARY_DIR}")
    pepita_gtest_cases(${ARG_NAME} ${test_bin} FILTER "${ARG_TEST_FILTER}")
  endif()

  file(GLOB benches CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/bench/${ARG_NAME}/*.cpp)
  if(PEPITA_BUILD_BENCH AND benches)
    foreach(bench_src IN LISTS benches)
      get_filename_component(stem ${bench_src} NAME_WE)
      set(bench_bin bench_${ARG_NAME}_${stem})
      add_executable(${bench_bin} ${bench_src})
      target_include_directories(${bench_bin} PRIVATE ${PROJECT_SOURCE_DIR}/bench
        ${PROJECT_SOURCE_DIR}/src/${ARG_NAME})
      target_link_libraries(${bench_bin} PRIVATE ${lib} ${ARG_BENCH_DEPS} pepita_build_flags)
      set_target_properties(${bench_bin} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
    endforeach()
  endif()
endfunction()

# pepita_sublibrary(MODULE <m> DIR <d> DEPS <targets...>)
#
# A layer of a module that sits higher than the module itself: the sources under src/<m>/<d>/
# (left out of pepita_<m> with EXCLUDE_DIRS <d>) become the static library pepita_<m>_<d> (alias
# pepita::<m>_<d>), linking pepita_<m> plus DEPS, with only src/<m> on its private include path;
# installed and exported with the modules, part of the `pepita` umbrella. transport's dispatcher
# and worker are such layers.
function(pepita_sublibrary)
  cmake_parse_arguments(ARG "" "MODULE;DIR" "DEPS" ${ARGN})
  set(lib pepita_${ARG_MODULE}_${ARG_DIR})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS
    ${PROJECT_SOURCE_DIR}/src/${ARG_MODULE}/${ARG_DIR}/*.cpp)
  add_library(${lib} STATIC ${sources})
  add_library(pepita::${ARG_MODULE}_${ARG_DIR} ALIAS ${lib})
  target_include_directories(${lib}
    PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src/${ARG_MODULE})
  target_link_libraries(${lib} PUBLIC pepita_${ARG_MODULE} ${ARG_DEPS}
    PRIVATE $<BUILD_INTERFACE:pepita_build_flags>)
  target_link_libraries(pepita INTERFACE ${lib})
  set(PEPITA_ALL_MODULES ${PEPITA_ALL_MODULES} ${lib} CACHE INTERNAL "")
endfunction()

# pepita_executor_adapter(MODULE <m> DEPS <targets...>)
#
# A backend module's executor adapter, the same way for every backend: pepita_sublibrary DIR
# executor, i.e. pepita_<m>_executor (alias pepita::<m>_executor) from src/<m>/executor/, public
# header include/pepita/<m>/*_executor.hpp, linking pepita_<m> and pepita_executor plus DEPS. It
# sits above the executor layer while pepita_<m> itself may stay below it.
function(pepita_executor_adapter)
  cmake_parse_arguments(ARG "" "MODULE" "DEPS" ${ARGN})
  pepita_sublibrary(MODULE ${ARG_MODULE} DIR executor DEPS pepita_executor ${ARG_DEPS})
endfunction()
