# CMake toolchain for x86_64-pc-windows-gnu (mingw-w64 from Debian, win32 thread model;
# pthreads from winpthreads), tests run under wine through cross/wine-runner.sh:
#   cmake -S tests/c -B target/cross/c-windows \
#     -DCMAKE_TOOLCHAIN_FILE=cross/mingw-toolchain.cmake \
#     -DEDGEMODULE_LIB_DIR=target/x86_64-pc-windows-gnu/debug
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_CXX_COMPILER x86_64-w64-mingw32-g++)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
get_filename_component(_em_cross_dir "${CMAKE_CURRENT_LIST_DIR}" ABSOLUTE)
set(CMAKE_CROSSCOMPILING_EMULATOR "${_em_cross_dir}/wine-runner.sh")
set(EM_WITH_VALGRIND OFF CACHE BOOL "no valgrind for Windows binaries")
