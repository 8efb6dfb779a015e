# Installs headers, module libraries and a CMake package so users can find_package(pepita).
include(CMakePackageConfigHelpers)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/pepita DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS pepita ${PEPITA_ALL_MODULES} EXPORT pepitaTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET pepita_cli)
  install(TARGETS pepita_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(EXPORT pepitaTargets NAMESPACE pepita:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pepita)

# pepitaConfig.cmake finds Vulkan only when the gpu module (which links it) was built.
if(TARGET pepita_gpu)
  set(PEPITA_EXPORTS_GPU TRUE)
else()
  set(PEPITA_EXPORTS_GPU FALSE)
endif()
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/pepitaConfig.cmake.in
  ${PROJECT_BINARY_DIR}/pepitaConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pepita)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pepitaConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pepitaConfig.cmake ${PROJECT_BINARY_DIR}/pepitaConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/pepita)
