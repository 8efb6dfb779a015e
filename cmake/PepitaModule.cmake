# pepita_module(NAME <name> [HEADER_ONLY] [DEPS <targets...>] [TEST_DEPS <targets...>])
#
# Defines the static library pepita_<name> from src/<name>/*.cpp (or an INTERFACE library when
# HEADER_ONLY), one GoogleTest binary pepita_<name>_tests from tests/<name>/*.cpp registered with
# CTest, and one benchmark executable per bench/<name>/*.cpp. Modules are independent targets so a
# module builds and tests on its own: `cmake --build build --target pepita_<name>_tests`.
set(PEPITA_ALL_MODULES "" CACHE INTERNAL "")

function(pepita_module)
  cmake_parse_arguments(ARG "HEADER_ONLY" "NAME" "DEPS;TEST_DEPS;BENCH_DEPS" ${ARGN})
  set(lib pepita_${ARG_NAME})
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${ARG_NAME}/*.cpp)

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
      PRIVATE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${lib} PUBLIC ${ARG_DEPS} PRIVATE $<BUILD_INTERFACE:pepita_build_flags>)
  endif()
  add_library(pepita::${ARG_NAME} ALIAS ${lib})
  target_link_libraries(pepita INTERFACE ${lib})
  set(PEPITA_ALL_MODULES ${PEPITA_ALL_MODULES} ${lib} CACHE INTERNAL "")

  file(GLOB_RECURSE tests CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/${ARG_NAME}/*.cpp)
  if(PEPITA_BUILD_TESTS AND tests)
    set(test_bin pepita_${ARG_NAME}_tests)
    add_executable(${test_bin} ${tests})
    target_include_directories(${test_bin} PRIVATE ${PROJECT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(${test_bin} PRIVATE ${lib} ${ARG_TEST_DEPS} GTest::gtest GTest::gtest_main
      GTest::gmock rapidcheck rapidcheck_gtest pepita_build_flags)
    target_compile_definitions(${test_bin} PRIVATE
      PEPITA_SOURCE_DIR="${PROJECT_SOURCE_DIR}" PEPITA_BINARY_DIR="${PROJECT_BINARY_DIR}")
    add_test(NAME ${ARG_NAME} COMMAND ${test_bin} --gtest_color=no)
    set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT 900 LABELS ${ARG_NAME})
  endif()

  file(GLOB benches CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/bench/${ARG_NAME}/*.cpp)
  if(PEPITA_BUILD_BENCH AND benches)
    foreach(bench_src IN LISTS benches)
      get_filename_component(stem ${bench_src} NAME_WE)
      set(bench_bin bench_${ARG_NAME}_${stem})
      add_executable(${bench_bin} ${bench_src})
      target_include_directories(${bench_bin} PRIVATE ${PROJECT_SOURCE_DIR}/bench ${PROJECT_SOURCE_DIR}/src)
      target_link_libraries(${bench_bin} PRIVATE ${lib} ${ARG_BENCH_DEPS} pepita_build_flags)
      set_target_properties(${bench_bin} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
    endforeach()
  endif()
endfunction()
