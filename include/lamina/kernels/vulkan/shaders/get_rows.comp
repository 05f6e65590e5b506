// get_rows.comp — out[t] = row tokens[t] of a table of any GGUF type (the token embedding),
// decoded to floats. A workgroup per token. A table larger than one buffer binding is read part
// by part: this dispatch serves the tokens whose row lies in [first_row, first_row + rows).
//
// table [rows, columns] (WEIGHT_TYPE); tokens [n]; out [n, columns] floats.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(std430, set = 0, binding = 0) readonly buffer WeightWords { uint weight_words[]; };
#include "dequantize.glsl"

layout(local_size_x = ROW_THREADS) in;
layout(std430, set = 0, binding = 2) writeonly buffer Output { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Tokens { uint tokens[]; };
layout(push_constant) uniform Parameters {
  uint columns;
  uint row_bytes;
  uint first_row;
  uint rows;
} p;

void main() {
  const uint t = gl_WorkGroupID.x;
  const uint token = tokens[t];
  if (token < p.first_row || token >= p.first_row + p.rows) return;  // in another part
  const uint row_offset = (token - p.first_row) * p.row_bytes;
  const uint groups = p.columns / 32;
  float w[32];
  for (uint g = gl_LocalInvocationID.x; g < groups; g += ROW_THREADS) {
    dequantize_group(row_offset, g, w);
    for (uint i = 0; i < 32; ++i) y[t * p.columns + g * 32 + i] = w[i];
  }
  for (uint k = groups * 32 + gl_LocalInvocationID.x; k < p.columns; k += ROW_THREADS) {
    y[t * p.columns + k] = weight_element(row_offset, k);
  }
}
