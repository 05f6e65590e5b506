# Debian's and Ubuntu's libxsimd-dev 8.x install an `xsimd` CMake target whose
# INTERFACE_LINK_LIBRARIES name `xtl`, a package they neither require nor find; CMake then links
# `-lxtl`, which does not exist. When that is the case and xtl is really absent, an empty `xtl`
# target stands in (xsimd only needs xtl for its optional xtl::xcomplex support).
# Included by lamina's CMakeLists.txt and by the installed laminaConfig.cmake, after xsimd is found.
if(TARGET xsimd AND NOT TARGET xtl)
  get_target_property(_lamina_xsimd_links xsimd INTERFACE_LINK_LIBRARIES)
  if(_lamina_xsimd_links)
    list(FIND _lamina_xsimd_links "xtl" _lamina_xtl_index)
    if(NOT _lamina_xtl_index EQUAL -1)
      find_package(xtl QUIET)
      if(NOT TARGET xtl)
        add_library(xtl INTERFACE IMPORTED GLOBAL)
      endif()
    endif()
    unset(_lamina_xtl_index)
  endif()
  unset(_lamina_xsimd_links)
endif()
