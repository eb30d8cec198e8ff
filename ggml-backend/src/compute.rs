//! Runs a validated F2I matrix product over a thread pool (docs/backend.md §3).
//!
//! Work is split into tiles of output pairs × columns; each tile owns disjoint `&mut` pieces of the
//! result (rows j.. of the first half and n+j.. of the second half of each of its columns), so the
//! parallel part is safe Rust.

use crate::kernels::q8::Q8Cols;
use crate::kernels::{Kernel, QK, STAGE_BYTES};
use crate::pool::Team;

/// How activations enter the product (docs/backend.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 activations, f32 sums: agrees with a dequantize-then-dot to f32 rounding.
    Exact,
    /// Activations quantized to int8 once per product, one scale per block; integer sums (the
    /// default; error bound in `kernels::q8`).
    #[default]
    Q8,
}

impl Precision {
    /// `exact` or `q8`, as logged.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Q8 => "q8",
        }
    }
}

/// Output pairs handled together for each column before moving to the next column: their weight
/// rows (2 × 8 rows) stay in L1/L2 while the columns stream past.
const PAIR_SUBTILE: usize = 8;
/// Columns per tile for large batches.
const COL_TILE: usize = 16;

/// A matrix product y = Â x, one result column per activation column.
pub struct MulMat<'a> {
    /// The F2I weight: `n_rows` stored rows of `k / 256 · stages · 36` bytes.
    pub weights: &'a [u8],
    /// Real inputs (ne00).
    pub k: usize,
    /// Real outputs (ne01), even.
    pub n_rows: usize,
    /// Stages of the F2I type.
    pub stages: usize,
    /// Activation columns, each `k` floats.
    pub cols: Vec<&'a [f32]>,
    /// The result, `n_rows` floats per column, columns in the order of `cols`.
    pub dst: &'a mut [f32],
    /// Activation precision.
    pub precision: Precision,
}

/// One tile: a range of output pairs for some columns.
struct Tile<'a> {
    pair0: usize,
    /// (column index, y[pair0..pair0+len), y[n+pair0..n+pair0+len)) per column.
    cols: Vec<(usize, &'a mut [f32], &'a mut [f32])>,
}

impl MulMat<'_> {
    /// Computes the product with `kernel`, on `pool` when given (else on the calling thread).
    ///
    /// # Panics
    /// If the lengths are inconsistent (the caller validated them through `supports::check`).
    pub fn run(self, kernel: Kernel, pool: Option<&Team>) {
        self.run_with(kernel, pool, None)
    }

    /// [`MulMat::run`] with the int8 columns already quantized (`Q8Cols::quantize` of exactly
    /// `cols`), e.g. shared by the Q, K and V products of one input; ignored for `Precision::Exact`.
    ///
    /// # Panics
    /// As [`MulMat::run`], and if `pre` does not have one column per column of `cols`.
    pub fn run_with(self, kernel: Kernel, pool: Option<&Team>, pre: Option<&Q8Cols>) {
        let MulMat {
            weights,
            k,
            n_rows,
            stages,
            cols,
            dst,
            precision,
        } = self;
        assert!(
            k.is_multiple_of(QK) && n_rows.is_multiple_of(2) && (1..=4).contains(&stages),
            "mul_mat: bad shape"
        );
        let row_bytes = k / QK * stages * STAGE_BYTES;
        assert_eq!(weights.len(), row_bytes * n_rows, "mul_mat: weight size");
        assert_eq!(dst.len(), n_rows * cols.len(), "mul_mat: dst size");
        assert!(cols.iter().all(|c| c.len() == k), "mul_mat: column length");
        let (n, m) = (n_rows / 2, k / 2);
        if n == 0 || cols.is_empty() {
            return;
        }

        // the team's threads, the calling one included; small products run on the calling thread
        // alone when starting the team would cost as much as the work (see `Team::min_bytes`)
        let pool = pool.filter(|t| row_bytes * n_rows * cols.len() >= t.min_bytes());
        let threads = pool.map_or(1, Team::count);
        // enough tiles for load balance: about 4 per thread over pairs, columns in COL_TILE groups
        let col_tile = if cols.len() <= COL_TILE {
            cols.len()
        } else {
            COL_TILE
        };
        let col_tiles = cols.len().div_ceil(col_tile);
        let pair_tiles_wanted = (4 * threads).div_ceil(col_tiles).max(1);
        let pair_tile = n.div_ceil(pair_tiles_wanted).max(1);
        let pair_tiles = n.div_ceil(pair_tile);

        let mut tiles: Vec<Tile<'_>> = (0..pair_tiles * col_tiles)
            .map(|t| Tile {
                pair0: (t / col_tiles) * pair_tile,
                cols: Vec::with_capacity(col_tile),
            })
            .collect();
        for (c, y) in dst.chunks_exact_mut(n_rows).enumerate() {
            let (lo, hi) = y.split_at_mut(n);
            for (p, (lo, hi)) in lo
                .chunks_mut(pair_tile)
                .zip(hi.chunks_mut(pair_tile))
                .enumerate()
            {
                tiles[p * col_tiles + c / col_tile].cols.push((c, lo, hi));
            }
        }

        // int8 activations: quantized once (here, or by the caller), read by every tile
        let own;
        let q8 = match (precision, pre) {
            (Precision::Q8, Some(q)) => {
                assert_eq!(q.len(), cols.len(), "mul_mat: pre-quantized columns");
                Some(q)
            }
            (Precision::Q8, None) => {
                own = Q8Cols::quantize(&cols, k);
                Some(&own)
            }
            (Precision::Exact, _) => None,
        };
        let work = |tile: Tile<'_>| {
            let Tile {
                pair0,
                cols: mut tile_cols,
            } = tile;
            let len = tile_cols.first().map_or(0, |c| c.1.len());
            if let Some(q) = &q8 {
                // each pair's weight rows are decoded once for all the tile's columns
                let xs: Vec<_> = tile_cols.iter().map(|(c, _, _)| q.col(*c)).collect();
                let mut out = vec![(0.0f32, 0.0f32); xs.len()];
                for i in 0..len {
                    let j = pair0 + i;
                    let u = &weights[j * row_bytes..][..row_bytes];
                    let w = &weights[(n + j) * row_bytes..][..row_bytes];
                    kernel.pair_dot_q8_cols(u, w, stages, &xs, &mut out);
                    for ((_, lo, hi), &(re, im)) in tile_cols.iter_mut().zip(&out) {
                        lo[i] = re;
                        hi[i] = im;
                    }
                }
                return;
            }
            for sub in (0..len).step_by(PAIR_SUBTILE) {
                let sub_end = (sub + PAIR_SUBTILE).min(len);
                for (c, lo, hi) in tile_cols.iter_mut() {
                    let (x_re, x_im) = cols[*c].split_at(m);
                    for i in sub..sub_end {
                        let j = pair0 + i;
                        let u = &weights[j * row_bytes..][..row_bytes];
                        let w = &weights[(n + j) * row_bytes..][..row_bytes];
                        let (re, im) = kernel.pair_dot(u, w, stages, x_re, x_im);
                        lo[i] = re;
                        hi[i] = im;
                    }
                }
            }
        };
        match pool {
            Some(team) => {
                // every thread, the caller included, takes tiles from one queue until it is empty
                let queue = std::sync::Mutex::new(tiles.into_iter());
                let next = || queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                team.run_on_all(&|| {
                    while let Some(tile) = next() {
                        work(tile);
                    }
                });
            }
            None => tiles.into_iter().for_each(work),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::{dequantize, matvec, random_f2i, Rng};

    /// Full products on all available kernels and thread counts, odd column counts included,
    /// against the spec's dequantize-then-dot; NMSE ≤ 1e-10 (f32 sums vs f64 reference).
    #[test]
    fn mul_mat_matches_dequantized_reference() {
        let mut rng = Rng::new(3);
        // rayon teams of 3 and 4 threads, and libgomp's when it is installed
        let mut teams: Vec<Option<Team>> = vec![None];
        teams.extend([3, 4].map(|n| crate::pool::rayon_pool(n).map(Team::Rayon)));
        teams.push(crate::pool::tests::gomp_team(3));
        for (case, &(k, n_rows, stages, n_cols)) in [
            (256, 2, 1, 1),
            (512, 6, 2, 3),
            (768, 34, 3, 17),
            (1024, 64, 4, 2),
            (512, 130, 2, 40),
            // above the teams' min_bytes: these run on the teams
            (4096, 64, 2, 24),
            (2048, 512, 1, 2),
        ]
        .iter()
        .enumerate()
        {
            let data = random_f2i(&mut rng, k, n_rows, stages);
            let a = dequantize(&data, k, n_rows, stages);
            let x: Vec<f32> = (0..k * n_cols).map(|_| rng.unit()).collect();
            let want: Vec<f64> = x
                .chunks_exact(k)
                .flat_map(|col| matvec(&a, k, col))
                .collect();
            for (kernel, precision) in Kernel::available()
                .into_iter()
                .flat_map(|k| [(k, Precision::Exact), (k, Precision::Q8)])
            {
                // int8 activations: NMSE of 8-bit rounding on uniform data is ~1e-5
                let max_nmse = match precision {
                    Precision::Exact => 1e-10,
                    Precision::Q8 => 1e-4,
                };
                for pool in teams.iter().map(Option::as_ref) {
                    let mut dst = vec![f32::NAN; n_rows * n_cols];
                    MulMat {
                        weights: &data,
                        k,
                        n_rows,
                        stages,
                        cols: x.chunks_exact(k).collect(),
                        dst: &mut dst,
                        precision,
                    }
                    .run(kernel, pool);
                    let err: f64 = dst
                        .iter()
                        .zip(&want)
                        .map(|(&g, &w)| (g as f64 - w).powi(2))
                        .sum();
                    let norm: f64 = want.iter().map(|w| w * w).sum();
                    assert!(
                        err / norm <= max_nmse,
                        "case {case} {:?} {precision:?} threads {:?}: nmse {}",
                        kernel.isa(),
                        pool,
                        err / norm
                    );
                }
            }
        }
    }

    #[test]
    fn columns_may_share_memory() {
        // broadcast src1 (stride 0) gives the same column twice
        let mut rng = Rng::new(5);
        let (k, n_rows) = (256, 4);
        let data = random_f2i(&mut rng, k, n_rows, 2);
        let x: Vec<f32> = (0..k).map(|_| rng.unit()).collect();
        let mut dst = vec![0.0f32; 2 * n_rows];
        MulMat {
            weights: &data,
            k,
            n_rows,
            stages: 2,
            cols: vec![&x, &x],
            dst: &mut dst,
            precision: Precision::Q8,
        }
        .run(Kernel::best(), None);
        assert_eq!(dst[..n_rows], dst[n_rows..]);
    }
}
