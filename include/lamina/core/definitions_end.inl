// lamina/core/definitions_end.inl — closes what core/definitions_begin.inl opened.
#undef LAMINA_DETAIL_API
#undef LAMINA_DETAIL_DEFINITIONS
