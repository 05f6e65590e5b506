// lamina/core/definitions_begin.inl — what a header needs to put its heavy functions where
// LAMINA_SEPARATE_IMPLEMENTATION says (config.hpp). Included after the header's own includes;
// core/definitions_end.inl, at the header's end, takes the two macros back:
//   LAMINA_DETAIL_API          before those functions' declarations and definitions: `inline`
//                              in header-only mode, nothing when they are compiled in one file
//   LAMINA_DETAIL_DEFINITIONS  1 where their definitions are compiled: every file in header-only
//                              mode, only the LAMINA_IMPLEMENTATION file otherwise
//
//   LAMINA_DETAIL_API Result<Session> create_session(...);       // declaration, in every file
//   #if LAMINA_DETAIL_DEFINITIONS
//   LAMINA_DETAIL_API Result<Session> create_session(...) { … }  // definition
//   #endif
#if defined(LAMINA_DETAIL_API) || defined(LAMINA_DETAIL_DEFINITIONS)
#  error "core/definitions_begin.inl included twice without core/definitions_end.inl"
#endif
#if !LAMINA_SEPARATE_IMPLEMENTATION
#  define LAMINA_DETAIL_API inline
#  define LAMINA_DETAIL_DEFINITIONS 1
#elif defined(LAMINA_IMPLEMENTATION)
#  define LAMINA_DETAIL_API
#  define LAMINA_DETAIL_DEFINITIONS 1
#else
#  define LAMINA_DETAIL_API
#  define LAMINA_DETAIL_DEFINITIONS 0
#endif
