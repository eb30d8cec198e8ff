//! `quantize`'s per-tensor types: `--output-type`, `--embd-type`, `--tensor-type` and the named
//! mixtures of `--recipe`, in llama-quantize's spirit (`llama_tensor_get_type` of the pinned
//! llama.cpp). This module says which type each tensor *wants*; `plan::choose_type` then applies the
//! shape rules (F2I and k-quants need K % 256 = 0, …) and the fallback.
//!
//! Precedence, as in llama-quantize: for token_embd `--embd-type`, for output.weight `--output-type`;
//! then the first `--tensor-type` pattern that matches the name; then the recipe; then `--type`.
//!
//! The `mix` recipe per F2I width, after llama-quantize's mixtures for the nearest k-quant file type
//! (types above 4 bits, which F2I does not have, are k-quants):
//!
//! | tensor | W1 | W2 (~ Q2_K) | W3 (~ Q3_K_M) | W4 (~ Q4_K_M) |
//! |---|---|---|---|---|
//! | output.weight | Q6_K | Q6_K | Q6_K | Q6_K |
//! | token_embd (untied) | Q4_K | Q2_K | Q3_K | Q4_K |
//! | token_embd (tied) | output.weight's type | same | same | same |
//! | attn_v (and attn_qkv) | W3 if n_head/n_head_kv ≥ 4, else W2 | W4 if ≥ 4, else W3 | Q5_K for the first two, else W4 | Q6_K on "more bits" layers, else W4 |
//! | ffn_down | W2 | W3 | Q5_K in the first 1/16 of the layers, else W4 | Q6_K on "more bits" layers, else W4 |
//! | attn_output | W2 | W3 | W4 | W4 |
//! | everything else | --type | --type | --type | --type |
//!
//! "More bits" layers are llama-quantize's `use_more_bits`: the first and last eighth and every third
//! layer in between. W1 has no llama.cpp counterpart; its mixture is W2's shifted down one stage.
//! With a standard `--type` (f32, f16, bf16, q8_0) no recipe applies.

use fairy2i_format::GgmlType;

use crate::cli::{Recipe, TensorTypeRule};

/// llama-quantize's tensor categories (`tensor_get_category`: the first of these substrings found
/// in the name decides, output.weight and token_embd by exact name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `output.weight`.
    Output,
    /// `token_embd.weight`.
    TokenEmbd,
    /// `attn_v.weight`, `attn_qkv.weight`, `attn_kv_b.weight` (llama-quantize's "attn_v-like").
    AttnV,
    /// `attn_output.weight`.
    AttnOutput,
    /// `ffn_down`.
    FfnDown,
    /// Anything else.
    Other,
}

impl Category {
    /// The category of tensor `name`.
    pub fn of(name: &str) -> Category {
        if name == "output.weight" {
            return Category::Output;
        }
        if name == "token_embd.weight" {
            return Category::TokenEmbd;
        }
        for (needle, cat) in [
            ("attn_qkv.weight", Category::AttnV),
            ("attn_kv_b.weight", Category::AttnV),
            ("attn_v.weight", Category::AttnV),
            ("attn_k.weight", Category::Other),
            ("attn_q.weight", Category::Other),
            ("attn_output.weight", Category::AttnOutput),
            ("ffn_up", Category::Other),
            ("ffn_gate", Category::Other),
            ("ffn_down", Category::FfnDown),
        ] {
            if name.contains(needle) {
                return cat;
            }
        }
        Category::Other
    }
}

/// Where a tensor's wanted type comes from (shown in the summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--type`.
    Type,
    /// The recipe.
    Recipe(Recipe),
    /// A `--tensor-type` argument (as given).
    Pattern(String),
    /// `--output-type`.
    OutputFlag,
    /// `--embd-type`.
    EmbdFlag,
    /// token_embd of a tied model takes output.weight's type.
    TiedToOutput,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Type => write!(f, "--type"),
            Source::Recipe(r) => write!(f, "recipe {}", r.name()),
            Source::Pattern(p) => write!(f, "--tensor-type {p}"),
            Source::OutputFlag => write!(f, "--output-type"),
            Source::EmbdFlag => write!(f, "--embd-type"),
            Source::TiedToOutput => write!(f, "tied to output.weight"),
        }
    }
}

/// llama-quantize's `use_more_bits(i, n)`: the first and last eighth of `n`, and every third in
/// between.
pub fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The user's choices and the model facts the recipes look at.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// `--type`.
    pub base: GgmlType,
    /// `--recipe` (or `--pure`).
    pub recipe: Recipe,
    /// `--output-type`.
    pub output: Option<GgmlType>,
    /// `--embd-type`.
    pub embd: Option<GgmlType>,
    /// `--tensor-type`, in command-line order.
    pub patterns: &'a [TensorTypeRule],
    /// Query heads per key/value head (`head_count / head_count_kv`; 1 when unknown).
    pub n_gqa: u64,
}

/// Position of a tensor among those of its category, in file order (llama-quantize's
/// `i_attention_wv` / `i_ffn_down` counters), and their number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Position {
    /// Index among the tensors of its category.
    pub index: usize,
    /// Tensors of that category in the file.
    pub count: usize,
}

impl Rules<'_> {
    /// The first `--tensor-type` rule that matches `name`.
    fn pattern(&self, name: &str) -> Option<(GgmlType, Source)> {
        self.patterns
            .iter()
            .find(|r| r.matches(name))
            .map(|r| (r.ty, Source::Pattern(r.arg.clone())))
    }

    /// Whether a recipe applies (an F2I `--type`).
    fn recipe_applies(&self) -> bool {
        self.base.is_f2i()
    }

    /// The type output.weight wants.
    pub fn output(&self) -> (GgmlType, Source) {
        if let Some(t) = self.output {
            return (t, Source::OutputFlag);
        }
        if let Some(p) = self.pattern("output.weight") {
            return p;
        }
        match self.recipe {
            Recipe::Mix | Recipe::Uniform if self.recipe_applies() => {
                (GgmlType::Q6_K, Source::Recipe(self.recipe))
            }
            _ => (self.base, Source::Type),
        }
    }

    /// The type token_embd wants; `tied_output` is the type output.weight got when the model ties
    /// them (token_embd then serves as the output projection, unless that type is F2I).
    pub fn token_embd(&self, tied_output: Option<GgmlType>) -> (GgmlType, Source) {
        if let Some(t) = self.embd {
            return (t, Source::EmbdFlag);
        }
        if let Some(p) = self.pattern("token_embd.weight") {
            return p;
        }
        if let Some(t) = tied_output.filter(|t| !t.is_f2i()) {
            return (t, Source::TiedToOutput);
        }
        if !self.recipe_applies() {
            return (self.base, Source::Type);
        }
        let ty = match (self.recipe, self.base.f2i_stages()) {
            (Recipe::Pure, _) => GgmlType::Q8_0,
            (_, Some(2)) => GgmlType::Q2_K,
            (_, Some(3)) => GgmlType::Q3_K,
            _ => GgmlType::Q4_K,
        };
        (ty, Source::Recipe(self.recipe))
    }

    /// The type any other weight `name` wants; `pos` is its place among the tensors of its
    /// category.
    pub fn weight(&self, name: &str, pos: Position) -> (GgmlType, Source) {
        if let Some(p) = self.pattern(name) {
            return p;
        }
        if self.recipe != Recipe::Mix || !self.recipe_applies() {
            return (self.base, Source::Type);
        }
        let stages = self.base.f2i_stages().unwrap_or(2);
        let f2i = |s: usize| match s.clamp(1, 4) {
            1 => GgmlType::F2I_W1,
            2 => GgmlType::F2I_W2,
            3 => GgmlType::F2I_W3,
            _ => GgmlType::F2I_W4,
        };
        let more = use_more_bits(pos.index, pos.count);
        let ty = match (Category::of(name), stages) {
            (Category::AttnV, 1 | 2) => f2i(stages + if self.n_gqa >= 4 { 2 } else { 1 }),
            (Category::AttnV, 3) if pos.index < 2 => GgmlType::Q5_K,
            (Category::AttnV, 3) => GgmlType::F2I_W4,
            (Category::AttnV, _) if more => GgmlType::Q6_K,
            (Category::FfnDown, 3) if pos.index < pos.count / 16 => GgmlType::Q5_K,
            (Category::FfnDown, 4) if more => GgmlType::Q6_K,
            (Category::FfnDown | Category::AttnOutput, s) => f2i(s + 1),
            _ => self.base,
        };
        let source = if ty == self.base {
            Source::Type
        } else {
            Source::Recipe(self.recipe)
        };
        (ty, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_tensor_type;

    fn rules(base: GgmlType, recipe: Recipe, patterns: &[TensorTypeRule]) -> Rules<'_> {
        Rules {
            base,
            recipe,
            output: None,
            embd: None,
            patterns,
            n_gqa: 6,
        }
    }

    const P: Position = Position {
        index: 5,
        count: 28,
    };

    #[test]
    fn categories_as_llama_quantize() {
        assert_eq!(Category::of("output.weight"), Category::Output);
        assert_eq!(Category::of("token_embd.weight"), Category::TokenEmbd);
        assert_eq!(Category::of("blk.3.attn_v.weight"), Category::AttnV);
        assert_eq!(Category::of("blk.3.attn_qkv.weight"), Category::AttnV);
        assert_eq!(
            Category::of("blk.3.attn_output.weight"),
            Category::AttnOutput
        );
        assert_eq!(Category::of("blk.3.ffn_down.weight"), Category::FfnDown);
        assert_eq!(
            Category::of("blk.3.ffn_down_exps.weight"),
            Category::FfnDown
        );
        assert_eq!(Category::of("blk.3.attn_q.weight"), Category::Other);
        assert_eq!(Category::of("blk.3.ffn_up.weight"), Category::Other);
    }

    #[test]
    fn use_more_bits_as_llama_quantize() {
        // 28 layers: 0..3, 24..28, and (i - 3) % 3 == 2 in between.
        let more: Vec<usize> = (0..28).filter(|&i| use_more_bits(i, 28)).collect();
        assert_eq!(more, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn w2_mix_is_q2_k_like() {
        let r = rules(GgmlType::F2I_W2, Recipe::Mix, &[]);
        assert_eq!(r.output().0, GgmlType::Q6_K);
        assert_eq!(r.token_embd(None).0, GgmlType::Q2_K);
        assert_eq!(
            r.token_embd(Some(GgmlType::Q6_K)),
            (GgmlType::Q6_K, Source::TiedToOutput)
        );
        assert_eq!(r.weight("blk.5.attn_v.weight", P).0, GgmlType::F2I_W4);
        assert_eq!(r.weight("blk.5.ffn_down.weight", P).0, GgmlType::F2I_W3);
        assert_eq!(r.weight("blk.5.attn_output.weight", P).0, GgmlType::F2I_W3);
        assert_eq!(
            r.weight("blk.5.attn_q.weight", P),
            (GgmlType::F2I_W2, Source::Type)
        );
        let no_gqa = Rules { n_gqa: 1, ..r };
        assert_eq!(no_gqa.weight("blk.5.attn_v.weight", P).0, GgmlType::F2I_W3);
    }

    #[test]
    fn w3_and_w4_mixes() {
        let r3 = rules(GgmlType::F2I_W3, Recipe::Mix, &[]);
        let first = Position {
            index: 0,
            count: 28,
        };
        assert_eq!(r3.weight("blk.0.attn_v.weight", first).0, GgmlType::Q5_K);
        assert_eq!(r3.weight("blk.5.attn_v.weight", P).0, GgmlType::F2I_W4);
        assert_eq!(r3.weight("blk.0.ffn_down.weight", first).0, GgmlType::Q5_K);
        assert_eq!(r3.weight("blk.5.ffn_down.weight", P).0, GgmlType::F2I_W4);
        assert_eq!(r3.token_embd(None).0, GgmlType::Q3_K);
        let r4 = rules(GgmlType::F2I_W4, Recipe::Mix, &[]);
        assert_eq!(r4.weight("blk.0.attn_v.weight", first).0, GgmlType::Q6_K);
        assert_eq!(r4.weight("blk.5.ffn_down.weight", P).0, GgmlType::Q6_K);
        let p6 = Position {
            index: 6,
            count: 28,
        };
        assert_eq!(r4.weight("blk.6.ffn_down.weight", p6).0, GgmlType::F2I_W4);
        assert_eq!(
            r4.weight("blk.6.attn_output.weight", p6).0,
            GgmlType::F2I_W4
        );
        assert_eq!(r4.token_embd(None).0, GgmlType::Q4_K);
    }

    #[test]
    fn uniform_pure_and_standard_types() {
        let u = rules(GgmlType::F2I_W2, Recipe::Uniform, &[]);
        assert_eq!(u.output().0, GgmlType::Q6_K);
        assert_eq!(u.weight("blk.5.attn_v.weight", P).0, GgmlType::F2I_W2);
        let p = rules(GgmlType::F2I_W2, Recipe::Pure, &[]);
        assert_eq!(p.output(), (GgmlType::F2I_W2, Source::Type));
        assert_eq!(p.token_embd(Some(GgmlType::F2I_W2)).0, GgmlType::Q8_0);
        assert_eq!(p.weight("blk.5.attn_v.weight", P).0, GgmlType::F2I_W2);
        let q8 = rules(GgmlType::Q8_0, Recipe::Mix, &[]);
        assert_eq!(q8.output().0, GgmlType::Q8_0);
        assert_eq!(q8.token_embd(None).0, GgmlType::Q8_0);
        assert_eq!(q8.weight("blk.5.attn_v.weight", P).0, GgmlType::Q8_0);
    }

    #[test]
    fn flags_then_patterns_then_recipe() {
        let pats = [
            parse_tensor_type("attn_v=q8_0").unwrap(),
            parse_tensor_type("blk\\.5\\.=f2i_w1").unwrap(),
            parse_tensor_type("output=f2i_w3").unwrap(),
            parse_tensor_type("embd=q4_0").unwrap(),
        ];
        let r = rules(GgmlType::F2I_W2, Recipe::Mix, &pats);
        // The first match wins.
        assert_eq!(
            r.weight("blk.5.attn_v.weight", P),
            (GgmlType::Q8_0, Source::Pattern("attn_v=q8_0".into()))
        );
        assert_eq!(r.weight("blk.5.ffn_down.weight", P).0, GgmlType::F2I_W1);
        assert_eq!(r.weight("blk.6.ffn_down.weight", P).0, GgmlType::F2I_W3);
        assert_eq!(r.output().0, GgmlType::F2I_W3);
        assert_eq!(r.token_embd(Some(GgmlType::Q6_K)).0, GgmlType::Q4_0);
        let flags = Rules {
            output: Some(GgmlType::Q5_K),
            embd: Some(GgmlType::F16),
            ..r
        };
        assert_eq!(flags.output(), (GgmlType::Q5_K, Source::OutputFlag));
        assert_eq!(flags.token_embd(None), (GgmlType::F16, Source::EmbdFlag));
    }
}
