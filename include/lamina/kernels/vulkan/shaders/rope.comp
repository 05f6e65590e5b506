// rope.comp — rotates each head of each token by its position (RoPE), in place.
//
// x [tokens, heads, head_size]; cos/sin [tokens, pairs] computed on the host once per forward
// pass (the same tables as the CPU's, so every scaling the CPU supports applies). Pairs:
// (2i, 2i+1) for the interleaved (GGML "normal") style, (i, i + rotary/2) for NeoX.
// One invocation per (token, head, pair).
#version 450

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 1) buffer Heads { float x[]; };
layout(std430, set = 0, binding = 4) readonly buffer Cosines { float cos_table[]; };
layout(std430, set = 0, binding = 5) readonly buffer Sines { float sin_table[]; };
layout(push_constant) uniform Parameters {
  uint tokens;
  uint heads;
  uint head_size;
  uint pairs;  // rotary dimensions / 2
  uint neox;
} p;

void main() {
  const uint index = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64;
  if (index >= p.tokens * p.heads * p.pairs) return;
  const uint pair = index % p.pairs;
  const uint head = (index / p.pairs) % p.heads;
  const uint token = index / (p.pairs * p.heads);
  const uint base = (token * p.heads + head) * p.head_size;
  const uint first = base + (p.neox != 0 ? pair : 2 * pair);
  const uint second = base + (p.neox != 0 ? pair + p.pairs : 2 * pair + 1);
  const float c = cos_table[token * p.pairs + pair], s = sin_table[token * p.pairs + pair];
  const float a = x[first], b = x[second];
  x[first] = a * c - b * s;
  x[second] = a * s + b * c;
}
