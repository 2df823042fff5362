# Cross build for 64-bit ARM Linux with Debian's cross compiler (g++-aarch64-linux-gnu),
# run under qemu-user (scripts/test.sh's arm64 stage; docs/arm.md):
#   cmake -S . -B build/arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# xsimd is header-only and the same for every architecture: the build machine's copy
# is used through a directory that holds only it (adding /usr/include itself would
# put the build machine's C library headers before the target's). GoogleTest is
# built from Debian's sources (/usr/src/googletest; tests/CMakeLists.txt).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# The kernels' baseline: plain ARMv8-A (per-level flags are on the kernel objects only).
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a")
# -cpu max has dotprod and i8mm, so every level runs.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-cpu;max;-L;/usr/aarch64-linux-gnu)
if(EXISTS /usr/include/xsimd/xsimd.hpp AND NOT NCAS_XSIMD_INCLUDE)
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/xsimd-include)
    file(CREATE_LINK /usr/include/xsimd ${CMAKE_BINARY_DIR}/xsimd-include/xsimd SYMBOLIC)
    set(NCAS_XSIMD_INCLUDE ${CMAKE_BINARY_DIR}/xsimd-include CACHE PATH "xsimd for the target (the build machine's headers)")
endif()
