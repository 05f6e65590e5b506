// common.glsl — what every lamina compute shader shares.
//
// All pipelines use one layout: descriptor set 0 with eight storage buffers (bindings 0-7; a
// shader declares the ones it reads) and 128 bytes of push constants, so a forward pass binds
// buffers the same way for every kernel. Buffers hold 32-bit words: floats, uints, or raw GGUF
// blocks read byte by byte (dequantize.glsl), which needs no 8- or 16-bit storage feature.
#ifndef LAMINA_COMMON_GLSL
#define LAMINA_COMMON_GLSL

// The workgroup size of the row-parallel kernels (a row per workgroup, threads over columns).
#define ROW_THREADS 64

// A float sum over the workgroup's ROW_THREADS invocations, returned to every invocation.
// `scratch` is a shared array of ROW_THREADS floats owned by the caller.
#define WORKGROUP_SUM(value, scratch, result)                         \
  {                                                                   \
    scratch[gl_LocalInvocationID.x] = (value);                        \
    barrier();                                                        \
    for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {   \
      if (gl_LocalInvocationID.x < stride)                            \
        scratch[gl_LocalInvocationID.x] += scratch[gl_LocalInvocationID.x + stride]; \
      barrier();                                                      \
    }                                                                 \
    result = scratch[0];                                              \
    barrier();                                                        \
  }

#endif
