// lamina/adapters/combine.hpp — combining several LoRA adapters on one weight matrix into one,
// the way Hugging Face PEFT's LoraModel.add_weighted_adapter does.
//
//   lamina::lora::LowRankFactors first = ..., second = ...;       // same module of two adapters
//   lamina::lora::CombineOptions options;
//   options.method = lamina::lora::CombineMethod::svd;
//   options.rank = 16;
//   auto combined = lamina::lora::combine({{&first, 2.0f, 0.7f}, {&second, 1.0f, 0.3f}}, options);
//   if (!combined) { report(combined.error()); return; }
//   // combined->b [out, 16] times combined->a [16, in] is the new delta, with scaling 1.
//
// A LoRA on a weight W [out, in] is A [r, in] and B [out, r] with a scaling s (alpha / r, or
// alpha / sqrt(r) for rsLoRA): W' = W + s B A. combine() works on one module at a time; a caller
// combining whole adapters calls it once per module the adapters share.
//
// The combined factors are meant with scaling 1: every input's scaling is folded into them.
// PEFT does the same: it creates the new adapter with r = lora_alpha = new_rank
// (add_weighted_adapter: `replace(self.peft_config[adapters[0]], r=new_rank, lora_alpha=new_rank, ...)`),
// so alpha / r = 1. Caveat from PEFT at commit 5d602fdb: replace() also copies use_rslora from the
// first adapter, which then makes the scaling lora_alpha / sqrt(r) = sqrt(new_rank) — a bug fixed by
// PEFT pull request #3449 (forces use_rslora=False). To save a combined adapter in PEFT form,
// write r = lora_alpha = rank and use_rslora = false.
//
// Methods, each as PEFT computes it (src/peft/tuners/lora/model.py and src/peft/utils/merge_utils.py):
// w_i is an input's weight, s_i its scaling, c_i = w_i s_i.
//
//   cat     A' = [c_1 A_1; c_2 A_2; ...] (rows stacked), B' = [B_1, B_2, ...] (columns side by side),
//           rank = sum of ranks. B' A' = sum_i c_i B_i A_i exactly: the one lossless method.
//   svd     the best rank-k approximation (Eckart–Young) of D = sum_i c_i B_i A_i:
//           D = U S V^T, B' = U_k S_k, A' = V_k^T; k = options.rank, or the largest input rank when 0.
//           Computed without forming D (see linalg.hpp). Optional clamping as PEFT's svd_clamp.
//   linear  A' = sum_i sign(c_i) sqrt|c_i| A_i,  B' = sum_i sqrt|c_i| B_i  (equal ranks only).
//           Note: B' A' is NOT sum_i c_i B_i A_i; the cross terms B_i A_j stay, as in PEFT.
//   ties, dare_linear, dare_ties, magnitude_prune: like linear, A and B are merged separately,
//           each as a "task tensor" with the per-input weights above, by merge_utils' functions:
//     magnitude_prune  keep the floor(density * numel) largest |values| of each tensor, weighted sum;
//     ties             magnitude prune, elect a sign per element from the pruned, not yet weighted
//                      tensors (total: sign of their sum; frequency: sign of the count of positive
//                      minus negative entries; a tie elects +), then average the weighted entries
//                      whose sign equals the elected one: sum / max(1, how many);
//     dare_linear      keep each element with probability density, divide kept ones by density,
//                      weighted sum;
//     dare_ties        dare's random pruning, then ties' election and disjoint mean.
//           A density of 1 prunes nothing (PEFT's prune() returns the tensor as it is).
//
// PEFT rules kept on purpose:
//   - a single input is always combined with `linear`, whatever the method
//     (_check_add_weighted_adapter: `combination_type = "linear" if len(adapters) == 1`), so a
//     one-adapter `svd` does not reduce the rank;
//   - linear, ties, dare_* and magnitude_prune need equal ranks; the result has that rank.
//
// Deliberate differences from PEFT:
//   - svd: PEFT's _svd_generalized_task_arithmetic_weighted_adapter multiplies each delta by
//     `weight * target.scaling[adapter]`, but the delta comes from get_delta_weight(), which already
//     includes the scaling, so PEFT sums w_i s_i^2 B_i A_i. lamina sums the deltas as they act on the
//     model, w_i s_i B_i A_i, like cat does; set svd_scaling_twice_like_peft to reproduce PEFT.
//   - the combined variants ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd are not
//     offered: they prune the full [out, in] deltas, which this module never forms.
//   - dare draws its masks from lamina's seeded xoshiro256** (core/random.hpp), not PyTorch's
//     generator: a seed gives the same masks on every compiler and CPU, but not PyTorch's masks.
//     Draw order: the A tensors of the inputs in order (row-major), then the B tensors. Use a
//     different seed per module (e.g. seed + module index) if masks should not repeat across modules.
//   - magnitude pruning breaks ties in |value| by the lower flat index (torch.topk leaves it open).
//   - arithmetic is double, rounded to float at the end; PEFT computes in the adapter's dtype, so
//     results agree to float rounding, and an SVD's singular vectors may differ in sign (any SVD's do).
//   - density must be in (0, 1]: PEFT accepts density >= 1 as "no pruning" and density 0 produces
//     zeros (magnitude) or NaN (dare's division by 0); lamina reports those as invalid_argument.
//   - inputs with NaN or infinity are refused rather than propagated.
//
// Memory and time: linear-like methods hold one float copy of each input tensor; svd holds
// B_cat [out, R] and A_cat^T [in, R] and their Q factors in double, R = sum of ranks — about
// 32 (out + in) R bytes, 160 MiB at out = in = 8192, R = 320.
#pragma once

#include "../config.hpp"
#include "../core/result.hpp"
#include "../core/random.hpp"  // detail::Xoshiro256
#include "linalg.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../core/definitions_begin.inl"

LAMINA_NAMESPACE_BEGIN
namespace lora {

// The two factors of one LoRA module. delta = scaling * b a, [out, in].
struct LowRankFactors {
  std::size_t rank = 0;
  std::size_t in = 0;    // columns of the adapted weight (its input features)
  std::size_t out = 0;   // rows of the adapted weight (its output features)
  std::vector<float> a;  // [rank, in], row-major ("lora_A")
  std::vector<float> b;  // [out, rank], row-major ("lora_B")
};

// One adapter's part in a combination. `factors` is borrowed and must outlive the call.
struct CombineInput {
  const LowRankFactors* factors = nullptr;
  float scaling = 1.0f;  // the adapter's own alpha / r (or alpha / sqrt(r) for rsLoRA)
  float weight = 1.0f;   // how much of it to take; negative subtracts
};

// PEFT's combination_type values that work per module on factors (names as PEFT spells them).
enum class CombineMethod { linear, cat, svd, ties, dare_linear, dare_ties, magnitude_prune };

// How ties and dare_ties elect the sign of each element (PEFT's majority_sign_method).
enum class MajoritySign {
  total,      // sign of the sum of the pruned tensors: large entries weigh more
  frequency,  // sign of (count of positive entries - count of negative ones)
};

struct CombineOptions {
  CombineMethod method = CombineMethod::svd;  // PEFT's default combination_type
  std::size_t rank = 0;                       // svd: rank of the result; 0 = the largest input rank, as PEFT
  float density = 1.0f;                       // ties, dare_*, magnitude_prune: fraction kept, in (0, 1]
  MajoritySign majority_sign = MajoritySign::total;  // ties, dare_ties
  std::uint64_t seed = 0;                     // dare_*: seeds the masks
  // svd: PEFT's svd_clamp. After truncation, h = the q-quantile (linear interpolation, as
  // torch.quantile) of all entries of B' and A' together; both are clamped to [-h, h]. Empty = off.
  std::optional<float> svd_clamp;
  // svd: sum w_i s_i^2 B_i A_i instead of w_i s_i B_i A_i, as PEFT's code does (see the header note).
  bool svd_scaling_twice_like_peft = false;
};

inline const char* to_string(CombineMethod method) {
  switch (method) {
    case CombineMethod::linear: return "linear";
    case CombineMethod::cat: return "cat";
    case CombineMethod::svd: return "svd";
    case CombineMethod::ties: return "ties";
    case CombineMethod::dare_linear: return "dare_linear";
    case CombineMethod::dare_ties: return "dare_ties";
    case CombineMethod::magnitude_prune: return "magnitude_prune";
  }
  return "unknown";
}

inline const char* to_string(MajoritySign sign) {
  switch (sign) {
    case MajoritySign::total: return "total";
    case MajoritySign::frequency: return "frequency";
  }
  return "unknown";
}

// PEFT's spelling ("svd", "dare_ties", ...) to the enum; anything else is invalid_argument.
inline Result<CombineMethod> parse_combine_method(std::string_view name) {
  const CombineMethod all[] = {CombineMethod::linear,      CombineMethod::cat,       CombineMethod::svd,
                               CombineMethod::ties,        CombineMethod::dare_linear, CombineMethod::dare_ties,
                               CombineMethod::magnitude_prune};
  for (CombineMethod method : all)
    if (name == to_string(method)) return method;
  return fail(ErrorCode::invalid_argument,
              "unknown combination method '" + std::string(name) +
                  "' (expected linear, cat, svd, ties, dare_linear, dare_ties or magnitude_prune)");
}

inline Result<MajoritySign> parse_majority_sign(std::string_view name) {
  if (name == "total") return MajoritySign::total;
  if (name == "frequency") return MajoritySign::frequency;
  return fail(ErrorCode::invalid_argument,
              "unknown majority sign method '" + std::string(name) + "' (expected total or frequency)");
}

namespace detail {

inline bool all_finite(const std::vector<float>& values) {
  for (float value : values)
    if (!std::isfinite(value)) return false;
  return true;
}

inline int sign_of(float value) { return (value > 0.0f) - (value < 0.0f); }

// merge_utils.magnitude_based_pruning: keeps the floor(density * count) entries of largest |value|
// ([count], in place). Ties in |value| go to the lower index, so the kept set is unique and does
// not depend on the standard library's nth_element.
inline void magnitude_prune_in_place(std::vector<float>& tensor, float density) {
  if (density >= 1.0f) return;  // prune(): "no pruning will be performed"
  const std::size_t count = tensor.size();
  const auto keep = static_cast<std::size_t>(std::floor(static_cast<double>(density) * static_cast<double>(count)));
  if (keep >= count) return;
  std::vector<std::size_t> order(count);
  std::iota(order.begin(), order.end(), std::size_t{0});
  auto ranks_before = [&](std::size_t x, std::size_t y) {
    const float magnitude_x = std::fabs(tensor[x]);
    const float magnitude_y = std::fabs(tensor[y]);
    return magnitude_x > magnitude_y || (magnitude_x == magnitude_y && x < y);
  };
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), ranks_before);
  for (std::size_t position = keep; position < count; ++position) tensor[order[position]] = 0.0f;
}

// merge_utils.random_pruning with rescale: each entry survives with probability density and is then
// divided by density (in float, as PyTorch does on a float32 tensor).
inline void random_prune_in_place(std::vector<float>& tensor, float density, ::lamina::detail::Xoshiro256& random) {
  if (density >= 1.0f) return;
  const double probability = static_cast<double>(density);
  for (float& value : tensor) value = random.uniform() < probability ? value / density : 0.0f;
}

// One side (all A tensors, or all B tensors) of linear / ties / dare_* / magnitude_prune.
// tensors: [n] pointers to [count] floats each; weights: [n]. Returns [count].
inline std::vector<float> merge_task_tensors(const std::vector<const float*>& tensors, std::size_t count,
                                             const std::vector<double>& weights, const CombineOptions& options,
                                             ::lamina::detail::Xoshiro256& random) {
  const std::size_t n = tensors.size();
  const CombineMethod method = options.method;
  std::vector<float> merged(count, 0.0f);
  if (method == CombineMethod::linear) {  // merge_utils.task_arithmetic
    for (std::size_t e = 0; e < count; ++e) {
      double sum = 0.0;
      for (std::size_t i = 0; i < n; ++i) sum += weights[i] * static_cast<double>(tensors[i][e]);
      merged[e] = static_cast<float>(sum);
    }
    return merged;
  }

  // Sparsify: [n][count] pruned copies, in input order (which is also dare's draw order).
  std::vector<std::vector<float>> pruned(n);
  for (std::size_t i = 0; i < n; ++i) {
    pruned[i].assign(tensors[i], tensors[i] + count);
    if (method == CombineMethod::dare_linear || method == CombineMethod::dare_ties)
      random_prune_in_place(pruned[i], options.density, random);
    else
      magnitude_prune_in_place(pruned[i], options.density);
  }

  const bool elect_sign = method == CombineMethod::ties || method == CombineMethod::dare_ties;
  for (std::size_t e = 0; e < count; ++e) {
    if (!elect_sign) {  // magnitude_prune, dare_linear: weighted sum of the pruned tensors
      double sum = 0.0;
      for (std::size_t i = 0; i < n; ++i) sum += weights[i] * static_cast<double>(pruned[i][e]);
      merged[e] = static_cast<float>(sum);
      continue;
    }
    // calculate_majority_sign_mask: the vote uses the pruned tensors before weighting.
    double vote = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      vote += options.majority_sign == MajoritySign::total ? static_cast<double>(pruned[i][e])
                                                           : static_cast<double>(sign_of(pruned[i][e]));
    const int majority = vote >= 0.0 ? 1 : -1;
    // disjoint_merge: mean over the entries whose sign is the majority's (a zero has sign 0 and
    // never counts), at least 1 in the denominator.
    double sum = 0.0;
    std::size_t agreeing = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (sign_of(pruned[i][e]) != majority) continue;
      sum += weights[i] * static_cast<double>(pruned[i][e]);
      ++agreeing;
    }
    merged[e] = static_cast<float>(sum / static_cast<double>(std::max<std::size_t>(agreeing, 1)));
  }
  return merged;
}

// linear, ties, dare_*, magnitude_prune (_generalized_task_arithmetic_weighted_adapter): A and B
// merged separately; weight for A: sign(c) sqrt|c|, for B: sqrt|c| ("apply sign only on one side").
inline LowRankFactors combine_separately(const std::vector<CombineInput>& inputs, const CombineOptions& options) {
  const LowRankFactors& first = *inputs[0].factors;
  std::vector<const float*> a_tensors, b_tensors;
  std::vector<double> a_weights, b_weights;
  for (const CombineInput& input : inputs) {
    const double weight_with_scaling = static_cast<double>(input.weight) * static_cast<double>(input.scaling);
    const double root = std::sqrt(std::fabs(weight_with_scaling));
    a_weights.push_back(weight_with_scaling >= 0.0 ? root : -root);
    b_weights.push_back(root);
    a_tensors.push_back(input.factors->a.data());
    b_tensors.push_back(input.factors->b.data());
  }
  ::lamina::detail::Xoshiro256 random;
  random.seed(options.seed);
  LowRankFactors result;
  result.rank = first.rank;
  result.in = first.in;
  result.out = first.out;
  result.a = merge_task_tensors(a_tensors, first.rank * first.in, a_weights, options, random);
  result.b = merge_task_tensors(b_tensors, first.out * first.rank, b_weights, options, random);
  return result;
}

// cat: rows of c_i A_i stacked, columns of B_i side by side.
inline LowRankFactors combine_cat(const std::vector<CombineInput>& inputs) {
  const LowRankFactors& first = *inputs[0].factors;
  LowRankFactors result;
  result.in = first.in;
  result.out = first.out;
  for (const CombineInput& input : inputs) result.rank += input.factors->rank;
  result.a.resize(result.rank * result.in);
  result.b.resize(result.out * result.rank);
  std::size_t offset = 0;  // first row of A' / column of B' that belongs to this input
  for (const CombineInput& input : inputs) {
    const LowRankFactors& f = *input.factors;
    const double factor = static_cast<double>(input.weight) * static_cast<double>(input.scaling);
    for (std::size_t e = 0; e < f.rank * f.in; ++e)
      result.a[offset * result.in + e] = static_cast<float>(static_cast<double>(f.a[e]) * factor);
    for (std::size_t row = 0; row < f.out; ++row)
      for (std::size_t j = 0; j < f.rank; ++j) result.b[row * result.rank + offset + j] = f.b[row * f.rank + j];
    offset += f.rank;
  }
  return result;
}

// torch.quantile's default ("linear"): the value at position q (count - 1) of the sorted values,
// interpolated between its two neighbours.
inline double quantile_linear(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double position = q * static_cast<double>(values.size() - 1);
  const auto below = static_cast<std::size_t>(std::floor(position));
  const std::size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (values[above] - values[below]) * (position - static_cast<double>(below));
}

// svd: truncated SVD of D = B_cat A_cat without forming D ([out, in]); see linalg.hpp for the shapes.
inline LowRankFactors combine_svd(const std::vector<CombineInput>& inputs, const CombineOptions& options) {
  const LowRankFactors& first = *inputs[0].factors;
  const std::size_t in = first.in;
  const std::size_t out = first.out;
  std::size_t total_rank = 0;
  std::size_t largest_rank = 0;
  for (const CombineInput& input : inputs) {
    total_rank += input.factors->rank;
    largest_rank = std::max(largest_rank, input.factors->rank);
  }
  const std::size_t rank = options.rank != 0 ? options.rank : largest_rank;

  // B_cat [out, R]: the inputs' B side by side. A_cat^T [in, R]: c_i A_i^T side by side, where c_i
  // carries the weight and scaling (s_i twice when imitating PEFT's code).
  DenseMatrix b_cat(out, total_rank);
  DenseMatrix a_cat_transposed(in, total_rank);
  std::size_t offset = 0;
  for (const CombineInput& input : inputs) {
    const LowRankFactors& f = *input.factors;
    double factor = static_cast<double>(input.weight) * static_cast<double>(input.scaling);
    if (options.svd_scaling_twice_like_peft) factor *= static_cast<double>(input.scaling);
    for (std::size_t row = 0; row < out; ++row)
      for (std::size_t j = 0; j < f.rank; ++j) b_cat(row, offset + j) = static_cast<double>(f.b[row * f.rank + j]);
    for (std::size_t j = 0; j < f.rank; ++j)
      for (std::size_t column = 0; column < in; ++column)
        a_cat_transposed(column, offset + j) = factor * static_cast<double>(f.a[j * in + column]);
    offset += f.rank;
  }

  const ThinQr qr_b = householder_qr(std::move(b_cat));             // q [out, kb], r [kb, R]
  const ThinQr qr_a = householder_qr(std::move(a_cat_transposed));  // q [in, ka],  r [ka, R]
  const DenseMatrix core = multiply_transposed(qr_b.r, qr_a.r);     // [kb, ka] = Rb Ra^T
  const SmallSvd core_svd = jacobi_svd(core);                       // left [kb, k], right [ka, k]
  const std::size_t kept = std::min(rank, core_svd.singular_values.size());

  // B' = Qb left_k S_k [out, rank]; A' = (Qa right_k)^T [rank, in]. Components beyond the numerical
  // rank of D (rank > kept) are zero columns of B' and zero rows of A': they add nothing to B' A'.
  const std::size_t kb = qr_b.q.columns;
  const std::size_t ka = qr_a.q.columns;
  std::vector<double> b_values(out * rank, 0.0);
  std::vector<double> a_values(rank * in, 0.0);
  for (std::size_t row = 0; row < out; ++row) {
    const double* q_row = qr_b.q.row_data(row);
    for (std::size_t j = 0; j < kept; ++j) {
      double sum = 0.0;
      for (std::size_t l = 0; l < kb; ++l) sum += q_row[l] * core_svd.left(l, j);
      b_values[row * rank + j] = sum * core_svd.singular_values[j];
    }
  }
  for (std::size_t column = 0; column < in; ++column) {
    const double* q_row = qr_a.q.row_data(column);
    for (std::size_t j = 0; j < kept; ++j) {
      double sum = 0.0;
      for (std::size_t l = 0; l < ka; ++l) sum += q_row[l] * core_svd.right(l, j);
      a_values[j * in + column] = sum;
    }
  }

  if (options.svd_clamp) {
    std::vector<double> all(b_values);
    all.insert(all.end(), a_values.begin(), a_values.end());
    const double high = quantile_linear(std::move(all), static_cast<double>(*options.svd_clamp));
    const double low = -high;
    // torch.clamp(x, low, high) = min(max(x, low), high): when high < 0 everything becomes high.
    auto clamp = [&](double value) { return std::min(std::max(value, low), high); };
    for (double& value : b_values) value = clamp(value);
    for (double& value : a_values) value = clamp(value);
  }

  LowRankFactors result;
  result.rank = rank;
  result.in = in;
  result.out = out;
  result.a.assign(a_values.begin(), a_values.end());
  result.b.assign(b_values.begin(), b_values.end());
  return result;
}

inline Result<void> check_combine_arguments(const std::vector<CombineInput>& inputs, const CombineOptions& options) {
  if (inputs.empty()) return fail(ErrorCode::invalid_argument, "combine: no adapters given");
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = "combine: input " + std::to_string(i);
    const LowRankFactors* f = inputs[i].factors;
    if (f == nullptr) return fail(ErrorCode::invalid_argument, name + " has no factors (null pointer)");
    if (f->rank == 0 || f->in == 0 || f->out == 0)
      return fail(ErrorCode::invalid_argument, name + ": rank, in and out must all be positive (rank " +
                                                   std::to_string(f->rank) + ", in " + std::to_string(f->in) +
                                                   ", out " + std::to_string(f->out) + ")");
    const std::size_t limit = std::numeric_limits<std::size_t>::max();
    if (f->rank > limit / f->in || f->rank > limit / f->out)
      return fail(ErrorCode::invalid_argument, name + ": shape too large");
    if (f->a.size() != f->rank * f->in)
      return fail(ErrorCode::type_mismatch, name + ": A holds " + std::to_string(f->a.size()) +
                                                " values, expected rank * in = " + std::to_string(f->rank * f->in));
    if (f->b.size() != f->out * f->rank)
      return fail(ErrorCode::type_mismatch, name + ": B holds " + std::to_string(f->b.size()) +
                                                " values, expected out * rank = " + std::to_string(f->out * f->rank));
    const LowRankFactors& first = *inputs[0].factors;
    if (f->in != first.in || f->out != first.out)
      return fail(ErrorCode::type_mismatch, name + " adapts a [" + std::to_string(f->out) + ", " +
                                                std::to_string(f->in) + "] weight but input 0 a [" +
                                                std::to_string(first.out) + ", " + std::to_string(first.in) + "] one");
    if (!std::isfinite(inputs[i].weight) || !std::isfinite(inputs[i].scaling))
      return fail(ErrorCode::invalid_argument, name + ": weight and scaling must be finite (weight " +
                                                   ::lamina::detail::format_float(inputs[i].weight) + ", scaling " +
                                                   ::lamina::detail::format_float(inputs[i].scaling) + ")");
    if (!all_finite(f->a) || !all_finite(f->b))
      return fail(ErrorCode::invalid_argument, name + ": A or B holds NaN or infinity");
  }
  if (inputs.size() == 1) return success();  // combined with linear whatever the method (PEFT)

  const CombineMethod method = options.method;
  if (method != CombineMethod::cat && method != CombineMethod::svd) {
    for (const CombineInput& input : inputs)
      if (input.factors->rank != inputs[0].factors->rank)
        return fail(ErrorCode::invalid_argument,
                    std::string("combine: method ") + to_string(method) +
                        " needs all adapters to have the same rank (input 0 has " +
                        std::to_string(inputs[0].factors->rank) + ", another " +
                        std::to_string(input.factors->rank) + "); use cat or svd");
    if (method != CombineMethod::linear && !(options.density > 0.0f && options.density <= 1.0f))
      return fail(ErrorCode::invalid_argument,
                  std::string("combine: method ") + to_string(method) + " needs a density in (0, 1], got " +
                      ::lamina::detail::format_float(options.density));
  }
  if (method == CombineMethod::svd && options.svd_clamp &&
      !(*options.svd_clamp >= 0.0f && *options.svd_clamp <= 1.0f))
    return fail(ErrorCode::invalid_argument,
                "combine: svd_clamp is a quantile and must be in [0, 1], got " + ::lamina::detail::format_float(*options.svd_clamp));
  return success();
}

}  // namespace detail

// Combines the inputs (the same module of several adapters) into one pair of factors with scaling 1.
// Errors (nothing is thrown): no inputs, a null or malformed input, inputs adapting weights of
// different shapes, unequal ranks for a method other than cat and svd, a density outside (0, 1]
// for a pruning method, an svd_clamp outside [0, 1], NaN or infinity anywhere in the inputs.
LAMINA_DETAIL_API Result<LowRankFactors> combine(const std::vector<CombineInput>& inputs, const CombineOptions& options);
#if LAMINA_DETAIL_DEFINITIONS
LAMINA_DETAIL_API Result<LowRankFactors> combine(const std::vector<CombineInput>& inputs, const CombineOptions& options) {
  LAMINA_TRY(detail::check_combine_arguments(inputs, options));
  if (inputs.size() == 1) {
    CombineOptions linear = options;
    linear.method = CombineMethod::linear;
    return detail::combine_separately(inputs, linear);
  }
  switch (options.method) {
    case CombineMethod::cat: return detail::combine_cat(inputs);
    case CombineMethod::svd: return detail::combine_svd(inputs, options);
    case CombineMethod::linear:
    case CombineMethod::ties:
    case CombineMethod::dare_linear:
    case CombineMethod::dare_ties:
    case CombineMethod::magnitude_prune: return detail::combine_separately(inputs, options);
  }
  return fail(ErrorCode::invalid_argument, "combine: unknown method");
}
#endif

}  // namespace lora
LAMINA_NAMESPACE_END

#include "../core/definitions_end.inl"
