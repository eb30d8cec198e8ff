//! The row permutation that llama.cpp's `convert_hf_to_gguf.py` applies to `attn_q` / `attn_k` of the
//! `llama` architecture (`permute(W, n_head)`), and how it meets F2I's row pairing (`docs/format.md` §8).
//!
//! `permute(W, n) = W.reshape(n, 2, rows/n/2, cols).swapaxes(1, 2).reshape(W.shape)`: inside each head of
//! `hd = rows / n` rows, new row `2i + j` is old row `j·hd/2 + i`. The same permutation acts inside every
//! head, so when the head count is even, rows j and j + rows/2 (a Fairy2i pair: same position, heads h and
//! h + n/2) go to rows that are again a pair. Quantizing the permuted tensor then gives the permuted rows of
//! the quantized tensor (the scales are exact means, which do not depend on the order).

use crate::error::{Error, Result};

/// The llama Q/K permutation of `n_rows` rows in `n_head` heads: new row `r` takes old row `perm[r]`.
///
/// Needs `n_head > 0` and `n_rows` a multiple of `2·n_head` (an even head size).
pub fn llama_qk_permutation(n_rows: usize, n_head: usize) -> Result<Vec<usize>> {
    if n_head == 0 || !n_rows.is_multiple_of(n_head) || !(n_rows / n_head).is_multiple_of(2) {
        return Err(Error::HeadLayout { n_rows, n_head });
    }
    let hd = n_rows / n_head;
    let half = hd / 2;
    let mut perm = Vec::with_capacity(n_rows);
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                perm.push(h * hd + j * half + i);
            }
        }
    }
    Ok(perm)
}

/// Whether `perm` maps every Fairy2i row pair (j, j + n), n = len/2, onto a pair (i, i + n) with the U
/// row first: `perm[j] < n` and `perm[j + n] = perm[j] + n`. True for [`llama_qk_permutation`] with an
/// even head count; a converter falls back to a standard type when it is false.
pub fn preserves_pairing(perm: &[usize]) -> bool {
    if !perm.len().is_multiple_of(2) {
        return false;
    }
    let n = perm.len() / 2;
    perm.iter()
        .zip(&perm[n..])
        .all(|(&a, &b)| a < n && b == a + n)
}

/// Reorders the rows of a row-major matrix (`perm.len()` rows of `row_len` elements): new row `r` is old
/// row `perm[r]`. The rows of an F2I tensor permute the same way with `row_len` = its row size in bytes.
pub fn permute_rows<T: Copy>(data: &[T], row_len: usize, perm: &[usize]) -> Result<Vec<T>> {
    let rows = perm.len();
    let bad = || Error::BadPermutation {
        elements: data.len(),
        row_len,
        perm_len: rows,
    };
    if rows.checked_mul(row_len) != Some(data.len()) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(data.len());
    for &p in perm {
        let start = p.checked_mul(row_len).ok_or_else(bad)?;
        let row = data.get(start..start + row_len).ok_or_else(bad)?;
        out.extend_from_slice(row);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_dim_8_matches_the_fixture_readme() {
        // ../shared/fixtures/README.md: for head_dim 8 the rows of a head become [0,4,1,5,2,6,3,7].
        let p = llama_qk_permutation(16, 2).unwrap();
        assert_eq!(p, [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
    }

    #[test]
    fn even_head_counts_preserve_the_pairing() {
        for (rows, heads) in [(16, 2), (32, 4), (64, 8), (1536, 12), (256, 2)] {
            let p = llama_qk_permutation(rows, heads).unwrap();
            assert!(preserves_pairing(&p), "{rows} rows, {heads} heads");
        }
        for (rows, heads) in [(24, 3), (40, 5), (8, 1)] {
            let p = llama_qk_permutation(rows, heads).unwrap();
            assert!(!preserves_pairing(&p), "{rows} rows, {heads} heads");
        }
    }

    #[test]
    fn bad_layouts_are_errors() {
        for (rows, heads) in [(16, 0), (16, 3), (12, 4)] {
            assert!(matches!(
                llama_qk_permutation(rows, heads),
                Err(Error::HeadLayout { .. })
            ));
        }
        let d = [1, 2, 3, 4, 5, 6];
        assert_eq!(permute_rows(&d, 2, &[2, 0, 1]).unwrap(), [5, 6, 1, 2, 3, 4]);
        assert!(permute_rows(&d, 2, &[0, 1]).is_err());
        assert!(permute_rows(&d, 2, &[0, 1, 3]).is_err());
        assert!(permute_rows(&d, 2, &[0, 1, usize::MAX]).is_err());
    }
}
