// rms_norm.comp — out[t] = x[row(t)] / sqrt(mean(x[row(t)]²) + epsilon) * weight, a row per workgroup.
//
// row(t) = t, or indices[t] when `gather` is set (the output projection normalizes only the rows
// whose logits were asked for). x [*, columns]; out [row_count, columns]; weight [columns].
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = ROW_THREADS) in;
layout(std430, set = 0, binding = 1) readonly buffer Input { float x[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Output { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Indices { uint indices[]; };
layout(std430, set = 0, binding = 4) readonly buffer Weight { float weight[]; };
layout(push_constant) uniform Parameters {
  uint columns;
  uint gather;
  float epsilon;
} p;

shared float scratch[ROW_THREADS];

void main() {
  const uint t = gl_WorkGroupID.x;
  const uint source = (p.gather != 0 ? indices[t] : t) * p.columns;
  float sum = 0.0;
  for (uint i = gl_LocalInvocationID.x; i < p.columns; i += ROW_THREADS) sum += x[source + i] * x[source + i];
  float total;
  WORKGROUP_SUM(sum, scratch, total);
  const float scale = 1.0 / sqrt(total / float(p.columns) + p.epsilon);
  for (uint i = gl_LocalInvocationID.x; i < p.columns; i += ROW_THREADS) y[t * p.columns + i] = x[source + i] * scale * weight[i];
}
