// matmul.comp — y [tokens, rows] = x [tokens, columns] · Wᵀ for a weight matrix W [rows, columns]
// of any GGUF type (WEIGHT_TYPE, see dequantize.glsl), one pipeline per type.
//
// A workgroup computes one row of W for a tile of up to TOKEN_TILE tokens: its threads share
// the row's groups of 32 weights, decode each group once and use it for every token of the tile,
// then the partial sums are added across the workgroup: through shared memory (baseline), or
// with subgroupAdd first (SUBGROUP=1, when the device has subgroup arithmetic). Decoding (one
// token) is the same kernel with a tile of one.
//
// Rows: gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x (a vocabulary can have more rows
// than one grid dimension allows); token tile: gl_WorkGroupID.y. A matrix larger than one buffer
// binding is multiplied part by part: `output_offset` is where this part's rows land in y.
// With `gather`, token t reads row indices[index_offset + t] of x (the tokens of one adapter group).
#version 450
#extension GL_GOOGLE_include_directive : require
#if SUBGROUP
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer WeightWords { uint weight_words[]; };
#include "dequantize.glsl"

#define TOKEN_TILE 8

layout(local_size_x = ROW_THREADS) in;
layout(std430, set = 0, binding = 1) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Output { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Indices { uint indices[]; };
layout(push_constant) uniform Parameters {
  uint rows;           // rows of this part of W
  uint columns;
  uint row_bytes;      // bytes of one row of W
  uint tokens;
  uint output_offset;  // y column of this part's first row
  uint output_stride;  // floats per row of y
  uint gather;
  uint index_offset;   // with gather: where this group's token list starts in indices
} p;

#if SUBGROUP
shared float partial[TOKEN_TILE][ROW_THREADS];  // one entry per subgroup is used
#else
shared float partial[TOKEN_TILE][ROW_THREADS];
#endif

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.z * gl_NumWorkGroups.x;
  if (row >= p.rows) return;  // uniform across the workgroup
  const uint first_token = gl_WorkGroupID.y * TOKEN_TILE;
  const uint tile_tokens = min(p.tokens - first_token, uint(TOKEN_TILE));
  const uint thread = gl_LocalInvocationID.x;
  const uint row_offset = row * p.row_bytes;

  uint x_row[TOKEN_TILE];
  for (uint t = 0; t < TOKEN_TILE; ++t) {
    const uint token = first_token + min(t, tile_tokens - 1);
    x_row[t] = (p.gather != 0 ? indices[p.index_offset + token] : token) * p.columns;
  }
  float sums[TOKEN_TILE];
  for (uint t = 0; t < TOKEN_TILE; ++t) sums[t] = 0.0;

  const uint groups = p.columns / 32;
  float w[32];
  for (uint g = thread; g < groups; g += ROW_THREADS) {
    dequantize_group(row_offset, g, w);
    for (uint t = 0; t < TOKEN_TILE; ++t) {
      if (t >= tile_tokens) break;
      const uint base = x_row[t] + g * 32;
      float sum = 0.0;
      for (uint i = 0; i < 32; ++i) sum += w[i] * x[base + i];
      sums[t] += sum;
    }
  }
  // Float rows need not be a whole number of groups.
  for (uint k = groups * 32 + thread; k < p.columns; k += ROW_THREADS) {
    const float weight = weight_element(row_offset, k);
    for (uint t = 0; t < TOKEN_TILE; ++t) {
      if (t < tile_tokens) sums[t] += weight * x[x_row[t] + k];
    }
  }

#if SUBGROUP
  for (uint t = 0; t < TOKEN_TILE; ++t) sums[t] = subgroupAdd(sums[t]);
  if (gl_SubgroupInvocationID == 0) {
    for (uint t = 0; t < TOKEN_TILE; ++t) partial[t][gl_SubgroupID] = sums[t];
  }
  barrier();
  if (thread < tile_tokens) {
    float total = 0.0;
    for (uint s = 0; s < gl_NumSubgroups; ++s) total += partial[thread][s];
    y[(first_token + thread) * p.output_stride + p.output_offset + row] = total;
  }
#else
  for (uint t = 0; t < TOKEN_TILE; ++t) partial[t][thread] = sums[t];
  barrier();
  for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
    if (thread < stride) {
      for (uint t = 0; t < TOKEN_TILE; ++t) partial[t][thread] += partial[t][thread + stride];
    }
    barrier();
  }
  if (thread < tile_tokens) y[(first_token + thread) * p.output_stride + p.output_offset + row] = partial[thread][0];
#endif
}
