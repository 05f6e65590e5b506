// lamina/adapters/linalg.hpp — the small dense linear algebra that combining LoRA adapters needs:
// a row-major double matrix, a thin Householder QR, and a one-sided Jacobi SVD.
//
// Why these two and nothing more: the truncated SVD of a sum of low-rank deltas
//   delta = B_cat A_cat,   B_cat [out, R], A_cat [R, in],  R = sum of the adapters' ranks
// never needs the [out, in] matrix. With B_cat = Qb Rb and A_cat^T = Qa Ra (thin QR),
//   delta = Qb (Rb Ra^T) Qa^T,
// so the SVD of the small core M = Rb Ra^T ([kb, ka], at most R x R) = Um S Vm^T gives
//   delta = (Qb Um) S (Qa Vm)^T.
// Cost: O((out + in) R^2) for the two QRs and O(R^3) per Jacobi sweep, instead of the
// O(out in min(out, in)) of a dense SVD — seconds instead of minutes at out = in = 8192, R = 256.
//
// Everything is double: adapters are float, but the QR and the rotations lose a few digits, and
// double keeps the float result exact to its last bit or two.
//
// Internal to lamina (namespace lamina::lora::detail); shapes are checked with LAMINA_ASSERT
// because every caller is lamina's own code.
#pragma once

#include "../config.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <vector>

LAMINA_NAMESPACE_BEGIN
namespace lora {
namespace detail {

// A dense row-major matrix of doubles: element (row, column) is values[row * columns + column].
struct DenseMatrix {
  std::size_t rows = 0;
  std::size_t columns = 0;
  std::vector<double> values;  // [rows, columns]

  DenseMatrix() = default;
  DenseMatrix(std::size_t row_count, std::size_t column_count)
      : rows(row_count), columns(column_count), values(row_count * column_count, 0.0) {}

  double& operator()(std::size_t row, std::size_t column) { return values[row * columns + column]; }
  double operator()(std::size_t row, std::size_t column) const { return values[row * columns + column]; }
  double* row_data(std::size_t row) { return values.data() + row * columns; }
  const double* row_data(std::size_t row) const { return values.data() + row * columns; }
};

// a [m, k] times b^T where b is [n, k]: the result is [m, n]. Both operands are read along rows,
// which is why the transposed form is the one offered.
inline DenseMatrix multiply_transposed(const DenseMatrix& a, const DenseMatrix& b) {
  LAMINA_ASSERT(a.columns == b.columns, "multiply_transposed: inner dimensions differ");
  DenseMatrix product(a.rows, b.rows);
  for (std::size_t i = 0; i < a.rows; ++i) {
    const double* a_row = a.row_data(i);
    for (std::size_t j = 0; j < b.rows; ++j) {
      const double* b_row = b.row_data(j);
      double sum = 0.0;
      for (std::size_t l = 0; l < a.columns; ++l) sum += a_row[l] * b_row[l];
      product(i, j) = sum;
    }
  }
  return product;
}

// Thin QR of an [m, n] matrix, k = min(m, n): q [m, k] with orthonormal columns, r [k, n] upper
// trapezoidal (zero below the diagonal), q r = the input.
struct ThinQr {
  DenseMatrix q;  // [m, k]
  DenseMatrix r;  // [k, n]
};

// Householder QR. Householder rather than Gram-Schmidt because its q is orthonormal to rounding
// even when the columns are nearly dependent (adapters trained from one base often are), and a
// zero or dependent column needs no special case: its reflector is skipped and r gets a zero.
//
// The matrix is row-major, so each reflector H = I - 2 v v^T (|v| = 1) is applied as
//   w = v^T a (a row vector, accumulated row by row),  a -= 2 v w,
// which walks memory in order instead of striding down columns.
inline ThinQr householder_qr(DenseMatrix a) {
  const std::size_t m = a.rows;
  const std::size_t n = a.columns;
  const std::size_t k = std::min(m, n);
  DenseMatrix reflectors(k, m);  // row j: v_j, zero before index j; an all-zero row means H_j = I
  std::vector<double> w(n, 0.0);

  for (std::size_t j = 0; j < k; ++j) {
    double norm_squared = 0.0;
    for (std::size_t i = j; i < m; ++i) norm_squared += a(i, j) * a(i, j);
    if (norm_squared == 0.0) continue;  // column already zero below the diagonal and on it
    const double norm = std::sqrt(norm_squared);
    // alpha takes the sign opposite to a(j, j), so v_j = a(j, j) - alpha never cancels.
    const double alpha = a(j, j) >= 0.0 ? -norm : norm;
    double* v = reflectors.row_data(j);
    v[j] = a(j, j) - alpha;
    double v_norm_squared = v[j] * v[j];
    for (std::size_t i = j + 1; i < m; ++i) {
      v[i] = a(i, j);
      v_norm_squared += v[i] * v[i];
    }
    const double inverse_v_norm = 1.0 / std::sqrt(v_norm_squared);
    for (std::size_t i = j; i < m; ++i) v[i] *= inverse_v_norm;

    // Columns j+1 .. n-1 get H applied; column j becomes (alpha, 0, ..., 0) by construction.
    std::fill(w.begin(), w.end(), 0.0);
    for (std::size_t i = j; i < m; ++i) {
      const double* row = a.row_data(i);
      for (std::size_t c = j + 1; c < n; ++c) w[c] += v[i] * row[c];
    }
    for (std::size_t i = j; i < m; ++i) {
      double* row = a.row_data(i);
      const double twice_v = 2.0 * v[i];
      for (std::size_t c = j + 1; c < n; ++c) row[c] -= twice_v * w[c];
      row[j] = 0.0;
    }
    a(j, j) = alpha;
  }

  ThinQr result;
  result.r = DenseMatrix(k, n);
  for (std::size_t i = 0; i < k; ++i)
    for (std::size_t c = i; c < n; ++c) result.r(i, c) = a(i, c);

  // q = H_0 H_1 ... H_{k-1} [I_k; 0], applied from the last reflector back. H_j only touches rows
  // >= j, and columns < j are still unit vectors e_c with c < j there, so only columns >= j change.
  DenseMatrix& q = result.q;
  q = DenseMatrix(m, k);
  for (std::size_t i = 0; i < k; ++i) q(i, i) = 1.0;
  std::vector<double> wq(k, 0.0);
  for (std::size_t step = k; step-- > 0;) {
    const double* v = reflectors.row_data(step);
    std::fill(wq.begin(), wq.end(), 0.0);
    for (std::size_t i = step; i < m; ++i) {
      if (v[i] == 0.0) continue;
      const double* row = q.row_data(i);
      for (std::size_t c = step; c < k; ++c) wq[c] += v[i] * row[c];
    }
    for (std::size_t i = step; i < m; ++i) {
      if (v[i] == 0.0) continue;
      double* row = q.row_data(i);
      const double twice_v = 2.0 * v[i];
      for (std::size_t c = step; c < k; ++c) row[c] -= twice_v * wq[c];
    }
  }
  return result;
}

// SVD of a small [rows, columns] matrix, k = min(rows, columns):
//   matrix = left diag(singular_values) right^T,
// singular values sorted descending (equal ones keep their column order). Columns of left and
// right that belong to a nonzero singular value are orthonormal; where a singular value is exactly
// zero, the matching column of the side that was divided by it is zero instead (callers multiply
// that column by the singular value anyway, so no completion of the basis is computed).
struct SmallSvd {
  std::vector<double> singular_values;  // [k], descending
  DenseMatrix left;                     // [rows, k]
  DenseMatrix right;                    // [columns, k]
};

// One-sided Jacobi (Hestenes): rotate pairs of columns of the tall orientation of the matrix until
// every pair is orthogonal; the column norms are then the singular values, the normalized columns
// the left vectors, and the accumulated rotations the right vectors. Chosen over bidiagonalization
// + QR iteration because it is short, needs no shifts or deflation logic, and is accurate to
// rounding even for tiny singular values. A wide matrix is handled through its transpose.
//
// Cost per sweep: k^2 / 2 rotations of length max(rows, columns); 6 to 10 sweeps is typical.
inline SmallSvd jacobi_svd(const DenseMatrix& matrix) {
  const bool transposed = matrix.rows < matrix.columns;
  const std::size_t length = transposed ? matrix.columns : matrix.rows;  // of a column being rotated
  const std::size_t k = transposed ? matrix.rows : matrix.columns;       // columns being rotated

  // work [k, length]: row c holds column c of the tall orientation (M, or M^T when M is wide), so
  // a rotation touches two contiguous rows. rotations [k, k]: row c holds column c of V.
  DenseMatrix work(k, length);
  for (std::size_t c = 0; c < k; ++c)
    for (std::size_t i = 0; i < length; ++i) work(c, i) = transposed ? matrix(c, i) : matrix(i, c);
  DenseMatrix rotations(k, k);
  for (std::size_t c = 0; c < k; ++c) rotations(c, c) = 1.0;

  // A pair counts as orthogonal when |<p, q>| <= tolerance |p| |q|: a few units in the last place.
  const double tolerance = 1e-15;
  const int max_sweeps = 80;  // quadratic convergence makes ~10 enough; the cap only guards NaN-free
                              // but pathological inputs against looping forever
  auto rotate_rows = [](double* p, double* q, std::size_t count, double cosine, double sine) {
    for (std::size_t i = 0; i < count; ++i) {
      const double x = p[i];
      const double y = q[i];
      p[i] = cosine * x - sine * y;
      q[i] = sine * x + cosine * y;
    }
  };
  for (int sweep = 0; sweep < max_sweeps; ++sweep) {
    bool rotated = false;
    for (std::size_t p = 0; p + 1 < k; ++p) {
      for (std::size_t q = p + 1; q < k; ++q) {
        double* column_p = work.row_data(p);
        double* column_q = work.row_data(q);
        double alpha = 0.0, beta = 0.0, gamma = 0.0;
        for (std::size_t i = 0; i < length; ++i) {
          alpha += column_p[i] * column_p[i];
          beta += column_q[i] * column_q[i];
          gamma += column_p[i] * column_q[i];
        }
        if (gamma == 0.0 || std::fabs(gamma) <= tolerance * std::sqrt(alpha * beta)) continue;
        rotated = true;
        // The rotation angle that makes the pair orthogonal: t = tan(theta) is the smaller root
        // of t^2 + 2 zeta t - 1 = 0 (|theta| <= pi/4, so the sweep converges).
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = (zeta >= 0.0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::hypot(1.0, zeta));
        const double cosine = 1.0 / std::sqrt(1.0 + t * t);
        const double sine = cosine * t;
        rotate_rows(column_p, column_q, length, cosine, sine);
        rotate_rows(rotations.row_data(p), rotations.row_data(q), k, cosine, sine);
      }
    }
    if (!rotated) break;
  }

  std::vector<double> norms(k, 0.0);
  for (std::size_t c = 0; c < k; ++c) {
    const double* column = work.row_data(c);
    double sum = 0.0;
    for (std::size_t i = 0; i < length; ++i) sum += column[i] * column[i];
    norms[c] = std::sqrt(sum);
  }
  std::vector<std::size_t> order(k);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return norms[x] > norms[y]; });

  // Tall orientation T = (normalized work columns) S (rotations)^T. For M itself the normalized
  // columns are the left vectors; for M^T they are the right vectors of M, and the rotations the left.
  SmallSvd result;
  result.singular_values.resize(k);
  DenseMatrix normalized(length, k);
  DenseMatrix accumulated(k, k);
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t source = order[j];
    const double norm = norms[source];
    result.singular_values[j] = norm;
    const double* column = work.row_data(source);
    const double inverse = norm > 0.0 ? 1.0 / norm : 0.0;
    for (std::size_t i = 0; i < length; ++i) normalized(i, j) = column[i] * inverse;
    const double* rotation = rotations.row_data(source);
    for (std::size_t i = 0; i < k; ++i) accumulated(i, j) = rotation[i];
  }
  if (transposed) {
    result.left = std::move(accumulated);   // [rows, k], rows == k
    result.right = std::move(normalized);   // [columns, k]
  } else {
    result.left = std::move(normalized);    // [rows, k]
    result.right = std::move(accumulated);  // [columns, k], columns == k
  }
  return result;
}

}  // namespace detail
}  // namespace lora
LAMINA_NAMESPACE_END
