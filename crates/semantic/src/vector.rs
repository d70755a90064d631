//! Unit-length embeddings and the dot-product kernels the index scans with.
//!
//! An [`Embedding`] keeps its exact `f32` values and an 8-bit quantized copy. The index scans
//! the quantized copies (a quarter of the memory traffic of `f32`, which is what bounds a
//! brute-force scan) and rescores with the exact values only the rows whose *upper bound*
//! reaches the threshold, so results are the same as an exact `f32` scan.
//!
//! The kernels are written over fixed-width chunks with independent accumulators so the
//! compiler vectorizes them on the baseline target (SSE2 on x86-64, NEON on aarch64) without
//! `unsafe` or run-time feature detection.

/// Lanes of the `f32` kernel: sixteen independent accumulators (four SSE or two AVX registers).
const F32_LANES: usize = 16;
/// Lanes of the `i8` kernel.
const I8_LANES: usize = 32;
/// Largest magnitude of a quantized component.
const I8_MAX: f32 = 127.0;

/// Why a vector cannot be used as an embedding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbeddingError {
    /// The vector has no components.
    #[error("the embedding is empty")]
    Empty,
    /// A component is NaN or infinite.
    #[error("the embedding has a non-finite component")]
    NotFinite,
    /// Every component is zero, so it has no direction.
    #[error("the embedding has zero length")]
    Zero,
}

/// A unit-length vector with its quantized copy, ready to be compared or indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    values: Vec<f32>,
    quantized: Vec<i8>,
    /// `values[i] ≈ quantized[i] * scale`.
    scale: f32,
    /// Sum of `|values[i]|`.
    l1: f32,
    /// Sum of `|quantized[i]|`.
    quantized_l1: f32,
}

impl Embedding {
    /// Normalizes `values` to unit length and quantizes it.
    pub fn new(mut values: Vec<f32>) -> Result<Self, EmbeddingError> {
        if values.is_empty() {
            return Err(EmbeddingError::Empty);
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(EmbeddingError::NotFinite);
        }
        let norm = values
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(EmbeddingError::Zero);
        }
        for v in &mut values {
            *v = (f64::from(*v) / norm) as f32;
        }
        let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = max / I8_MAX;
        let quantized: Vec<i8> = values
            .iter()
            .map(|v| (v / scale).round().clamp(-I8_MAX, I8_MAX) as i8)
            .collect();
        let l1 = values.iter().map(|v| v.abs()).sum();
        let quantized_l1 = quantized.iter().map(|q| f32::from(q.unsigned_abs())).sum();
        Ok(Self {
            values,
            quantized,
            scale,
            l1,
            quantized_l1,
        })
    }

    /// The unit-length values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of dimensions.
    pub fn dimensions(&self) -> usize {
        self.values.len()
    }

    /// Cosine similarity with `other` (the dot product of two unit vectors); `None` when the
    /// dimensions differ.
    pub fn cosine(&self, other: &Embedding) -> Option<f32> {
        (self.values.len() == other.values.len()).then(|| dot_f32(&self.values, &other.values))
    }

    pub(crate) fn quantized(&self) -> &[i8] {
        &self.quantized
    }

    pub(crate) fn scale(&self) -> f32 {
        self.scale
    }

    pub(crate) fn quantized_l1(&self) -> f32 {
        self.quantized_l1
    }

    /// Takes the exact values back.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }
}

/// Dot product of two `f32` slices of equal length (extra elements of the longer are ignored).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (a_chunks, a_rest) = a.as_chunks::<F32_LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<F32_LANES>();
    let mut acc = [0.0f32; F32_LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..F32_LANES {
            acc[lane] += x[lane] * y[lane];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// Dot product of two `i8` slices of equal length, exactly, in `i32`.
///
/// Each product is at most 127² and rows are at most a few thousand dimensions, so the
/// per-lane sums cannot overflow for any embedding a model produces (it would take more
/// than 4 million dimensions).
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (a_chunks, a_rest) = a.as_chunks::<I8_LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<I8_LANES>();
    let mut acc = [0i32; I8_LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for lane in 0..I8_LANES {
            acc[lane] += i32::from(x[lane]) * i32::from(y[lane]);
        }
    }
    let mut tail = 0i32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        tail += i32::from(*x) * i32::from(*y);
    }
    acc.iter().sum::<i32>() + tail
}

/// An upper bound of the exact dot product of two embeddings, from their quantized copies.
///
/// With `v = s_v·v̂ + e_v` and `q = s_q·q̂ + e_q` (rounding errors at most half a step per
/// component), `v·q = s_v·s_q·(v̂·q̂) + s_v·(v̂·e_q) + e_v·q`, so the error is at most
/// `s_v·(s_q·|v̂|₁ + |q|₁)/2`. A small slack covers `f32` rounding in both computations.
#[inline]
pub(crate) fn upper_bound(
    quantized_dot: i32,
    row_scale: f32,
    row_quantized_l1: f32,
    query: &Embedding,
) -> f32 {
    const ROUNDING_SLACK: f32 = 1e-4;
    let approx = quantized_dot as f32 * row_scale * query.scale;
    let error = 0.5 * row_scale * (query.scale * row_quantized_l1 + query.l1);
    approx + error + ROUNDING_SLACK
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn pseudo_random(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                (*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn embeddings_are_unit_length_and_reject_unusable_vectors() {
        let e = Embedding::new(vec![3.0, 4.0]).unwrap();
        assert_eq!(e.values(), &[0.6, 0.8]);
        assert!((e.cosine(&e).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(Embedding::new(vec![]), Err(EmbeddingError::Empty));
        assert_eq!(Embedding::new(vec![0.0, 0.0]), Err(EmbeddingError::Zero));
        assert_eq!(
            Embedding::new(vec![1.0, f32::NAN]),
            Err(EmbeddingError::NotFinite)
        );
        assert_eq!(e.cosine(&Embedding::new(vec![1.0]).unwrap()), None);
    }

    #[test]
    fn kernels_match_naive_sums_on_every_length() {
        let mut seed = 7;
        for n in [1, 3, 15, 16, 17, 31, 32, 33, 100, 384, 385] {
            let a = pseudo_random(&mut seed, n);
            let b = pseudo_random(&mut seed, n);
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot_f32(&a, &b)) - naive).abs() < 1e-4, "n={n}");
            let qa: Vec<i8> = a.iter().map(|x| (x * 250.0) as i8).collect();
            let qb: Vec<i8> = b.iter().map(|x| (x * 250.0) as i8).collect();
            let naive: i32 = qa
                .iter()
                .zip(&qb)
                .map(|(x, y)| i32::from(*x) * i32::from(*y))
                .sum();
            assert_eq!(dot_i8(&qa, &qb), naive, "n={n}");
        }
    }

    #[test]
    fn the_quantized_bound_never_falls_below_the_exact_score() {
        let mut seed = 99;
        let query = Embedding::new(pseudo_random(&mut seed, 384)).unwrap();
        let mut tightest = f32::MAX;
        for i in 0..2000 {
            // Rows ever closer to the query, up to identical, plus a few spiky ones.
            let mut row = pseudo_random(&mut seed, 384);
            let weight = (i % 50) as f32 / 10.0;
            for (r, q) in row.iter_mut().zip(query.values()) {
                *r += weight * q;
            }
            if i % 97 == 0 {
                row[i % 384] = 40.0;
            }
            let row = Embedding::new(row).unwrap();
            let exact = dot_f32(row.values(), query.values());
            let bound = upper_bound(
                dot_i8(row.quantized(), query.quantized()),
                row.scale(),
                row.quantized_l1(),
                &query,
            );
            assert!(bound >= exact, "bound {bound} < exact {exact}");
            tightest = tightest.min(bound - exact);
        }
        // The bound is useful, not merely safe.
        assert!(tightest < 0.05, "slack {tightest}");
    }
}
