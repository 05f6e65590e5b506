// attention.comp — grouped-query attention of one token's query head over the KV cache:
//   out[h] = Σ_c softmax_c(q[h]·k_c / sqrt(head_size)) · v_c
// over the cells c that the token sees (its own sequence, at or before its position: the host
// lists them, so sequences of one batch never see each other). A workgroup per (token, head);
// the cells are taken 64 at a time with a running maximum and sum (online softmax), so any
// context length runs in shared memory of a fixed size.
//
// query, out [tokens, heads, head_size]; cache_key, cache_value [cells, kv_heads, head_size] (F32);
// ranges [tokens, 2]: (first, count) into visible; visible: cell indices, by position.
#version 450
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define MAX_HEAD_SIZE 256
#define DIMENSIONS_PER_THREAD (MAX_HEAD_SIZE / ROW_THREADS)

layout(local_size_x = ROW_THREADS) in;
layout(std430, set = 0, binding = 1) readonly buffer Queries { float query[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Output { float out_rows[]; };
layout(std430, set = 0, binding = 3) readonly buffer Visible { uint visible[]; };
layout(std430, set = 0, binding = 4) readonly buffer CacheKeys { float cache_key[]; };
layout(std430, set = 0, binding = 5) readonly buffer CacheValues { float cache_value[]; };
layout(std430, set = 0, binding = 6) readonly buffer Ranges { uint ranges[]; };
layout(push_constant) uniform Parameters {
  uint heads;
  uint kv_heads;
  uint head_size;
  float scale;  // 1 / sqrt(head_size)
} p;

shared float q_shared[MAX_HEAD_SIZE];
shared float scores[ROW_THREADS];
shared uint chunk_cells[ROW_THREADS];
shared float scratch[ROW_THREADS];

void main() {
  const uint head = gl_WorkGroupID.x, token = gl_WorkGroupID.y;
  const uint thread = gl_LocalInvocationID.x;
  const uint kv_head = head / (p.heads / p.kv_heads);
  const uint kv_width = p.kv_heads * p.head_size;
  const uint q_base = (token * p.heads + head) * p.head_size;
  for (uint d = thread; d < p.head_size; d += ROW_THREADS) q_shared[d] = query[q_base + d];
  const uint first = ranges[2 * token], count = ranges[2 * token + 1];
  barrier();

  float running_max = -1.0e30, running_sum = 0.0;
  float accumulated[DIMENSIONS_PER_THREAD];
  for (uint j = 0; j < DIMENSIONS_PER_THREAD; ++j) accumulated[j] = 0.0;

  for (uint start = 0; start < count; start += ROW_THREADS) {
    const uint c = start + thread;
    float score = -1.0e30;
    if (c < count) {
      const uint cell = visible[first + c];
      chunk_cells[thread] = cell;
      const uint k_base = cell * kv_width + kv_head * p.head_size;
      float dot_product = 0.0;
      for (uint d = 0; d < p.head_size; ++d) dot_product += q_shared[d] * cache_key[k_base + d];
      score = dot_product * p.scale;
    }
    // The chunk's maximum, then each cell's weight relative to the new running maximum.
    scratch[thread] = score;
    barrier();
    for (uint stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
      if (thread < stride) scratch[thread] = max(scratch[thread], scratch[thread + stride]);
      barrier();
    }
    const float new_max = max(running_max, scratch[0]);
    barrier();
    const float weight = c < count ? exp(score - new_max) : 0.0;
    scores[thread] = weight;
    float chunk_sum;
    WORKGROUP_SUM(weight, scratch, chunk_sum);  // its barriers also publish scores[] and chunk_cells[]
    const float correction = exp(running_max - new_max);
    running_sum = running_sum * correction + chunk_sum;
    running_max = new_max;
    const uint in_chunk = min(count - start, uint(ROW_THREADS));
    for (uint j = 0; j < DIMENSIONS_PER_THREAD; ++j) {
      const uint d = thread + j * ROW_THREADS;
      if (d >= p.head_size) break;
      float sum = accumulated[j] * correction;
      for (uint k = 0; k < in_chunk; ++k) sum += scores[k] * cache_value[chunk_cells[k] * kv_width + kv_head * p.head_size + d];
      accumulated[j] = sum;
    }
    barrier();  // scores[] and chunk_cells[] are rewritten by the next chunk
  }
  const float inverse_sum = running_sum > 0.0 ? 1.0 / running_sum : 0.0;
  for (uint j = 0; j < DIMENSIONS_PER_THREAD; ++j) {
    const uint d = thread + j * ROW_THREADS;
    if (d < p.head_size) out_rows[q_base + d] = accumulated[j] * inverse_sum;
  }
}
