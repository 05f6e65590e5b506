// elementwise.comp — the element-by-element steps of a layer, chosen by `operation`:
//   0 add:        x[i] += y[i]                          (residual add)
//   1 add_bias:   x[i] += y[i % width]                  (Q/K/V bias; y [width])
//   2 silu_mul:   x[i] = silu(x[i]) * y[i]              (SwiGLU: x gate, y up)
//   3 copy:       x[i] = y[i]
// x, y [count] floats; one invocation per element, 64 per workgroup, rows of the grid's y folded in.
#version 450

layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 1) buffer Target { float x[]; };
layout(std430, set = 0, binding = 2) readonly buffer Source { float y[]; };
layout(push_constant) uniform Parameters {
  uint count;
  uint operation;
  uint width;
} p;

void main() {
  const uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 64;
  if (i >= p.count) return;
  if (p.operation == 0) {
    x[i] += y[i];
  } else if (p.operation == 1) {
    x[i] += y[i % p.width];
  } else if (p.operation == 2) {
    const float gate = x[i];
    x[i] = gate / (1.0 + exp(-gate)) * y[i];
  } else {
    x[i] = y[i];
  }
}
