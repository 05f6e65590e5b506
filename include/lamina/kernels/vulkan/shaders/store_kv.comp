// store_kv.comp — copies each token's key and value rows into its KV cache cell.
//
// key, value [tokens, kv_width]; cells [tokens]; cache_keys, cache_values [cells, kv_width] of
// the layer (F32). One invocation per (token, element).
#version 450

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 1) readonly buffer Keys { float key[]; };
layout(std430, set = 0, binding = 2) readonly buffer Values { float value[]; };
layout(std430, set = 0, binding = 3) readonly buffer Cells { uint cells[]; };
layout(std430, set = 0, binding = 4) writeonly buffer CacheKeys { float cache_key[]; };
layout(std430, set = 0, binding = 5) writeonly buffer CacheValues { float cache_value[]; };
layout(push_constant) uniform Parameters {
  uint tokens;
  uint kv_width;
} p;

void main() {
  const uint index = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64;
  if (index >= p.tokens * p.kv_width) return;
  const uint token = index / p.kv_width, i = index % p.kv_width;
  const uint target = cells[token] * p.kv_width + i;
  cache_key[target] = key[index];
  cache_value[target] = value[index];
}
