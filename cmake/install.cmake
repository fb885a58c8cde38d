# Install rules: the library, its headers, a relocatable CMake package (find_package(myriad)
# gives myriad::myriad) and a pkg-config file (pkg-config --cflags --libs myriad).
include(CMakePackageConfigHelpers)

set(MYRIAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/myriad)

install(TARGETS myriad EXPORT myriadTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/myriad DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT myriadTargets NAMESPACE myriad:: DESTINATION ${MYRIAD_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/myriadConfig.cmake.in
  ${PROJECT_BINARY_DIR}/myriadConfig.cmake INSTALL_DESTINATION ${MYRIAD_CMAKE_DIR})
# 0.x: a minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/myriadConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/myriadConfig.cmake ${PROJECT_BINARY_DIR}/myriadConfigVersion.cmake
  DESTINATION ${MYRIAD_CMAKE_DIR})

# pkg-config: a static library needs liburing and threads at the consumer's link; a shared one
# carries them itself. The prefix is found from the .pc file's own place, so that
# `cmake --install --prefix DIR` gives a working file wherever DIR is.
if(BUILD_SHARED_LIBS)
  set(MYRIAD_PC_REQUIRES "Requires.private: liburing >= 2.3, libcrypto, zlib")
  set(MYRIAD_PC_LIBS_PRIVATE "Libs.private: -pthread")
  set(MYRIAD_PC_LIBS "-lmyriad")
else()
  set(MYRIAD_PC_REQUIRES "Requires: liburing >= 2.3, libcrypto, zlib")
  set(MYRIAD_PC_LIBS_PRIVATE "")
  set(MYRIAD_PC_LIBS "-lmyriad -pthread")
endif()
file(RELATIVE_PATH MYRIAD_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" MYRIAD_PC_TO_PREFIX "${MYRIAD_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/myriad.pc.in ${PROJECT_BINARY_DIR}/myriad.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/myriad.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
