// lora_b.comp — adds one adapter's change to the outputs of one group of tokens:
//   LoRA:  y[row(t)][o] += factor · Σ_k u[t][k] · B[o][k]                 factor = scale · alpha/r
//   DoRA:  y[row(t)][o] += scale · ((d_o − 1) · base[row(t)][o] + d_o · scaling · Σ_k u[t][k] · B[o][k])
// where u = A x (matmul.comp with `gather`), row(t) = indices[index_offset + t] (the group's tokens in the batch),
// B is stored transposed, [rank, out] (F32, or F16 with FACTOR_F16=1), base is W x before any
// adapter (DoRA), and d_o = m_o / ||W + scaling B A||_o (row_scale). One invocation per (t, o).
#version 450

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) readonly buffer Factor { uint b_words[]; };
layout(std430, set = 0, binding = 1) readonly buffer RankOutputs { float u[]; };
layout(std430, set = 0, binding = 2) buffer Output { float y[]; };
layout(std430, set = 0, binding = 3) readonly buffer Indices { uint indices[]; };
layout(std430, set = 0, binding = 4) readonly buffer Base { float base[]; };
layout(std430, set = 0, binding = 5) readonly buffer RowScale { float row_scale[]; };
layout(push_constant) uniform Parameters {
  uint outputs;
  uint rank;
  uint tokens;
  float factor;   // LoRA: scale × scaling
  uint dora;
  float scale;    // DoRA: the stack entry's scale
  float scaling;  // DoRA: alpha / r (or alpha / sqrt(r))
  uint index_offset;
} p;

float b_at(uint k, uint o) {
  const uint index = k * p.outputs + o;
#if FACTOR_F16
  const vec2 pair = unpackHalf2x16(b_words[index >> 1]);
  return (index & 1u) != 0 ? pair.y : pair.x;
#else
  return uintBitsToFloat(b_words[index]);
#endif
}

void main() {
  const uint index = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64;
  if (index >= p.tokens * p.outputs) return;
  const uint t = index / p.outputs, o = index % p.outputs;
  float change = 0.0;
  for (uint k = 0; k < p.rank; ++k) change += u[t * p.rank + k] * b_at(k, o);
  const uint target = indices[p.index_offset + t] * p.outputs + o;
  if (p.dora != 0) {
    const float d = row_scale[o];
    y[target] += p.scale * ((d - 1.0) * base[target] + d * p.scaling * change);
  } else {
    y[target] += p.factor * change;
  }
}
