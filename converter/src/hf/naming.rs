//! gguf-py's naming heuristics (`gguf/metadata.py` `get_model_id_components`, `id_to_title`;
//! `gguf/utility.py` `model_weight_count_rounded_notation`): `general.name`, `basename`, `finetune`,
//! `version`, `organization` and `size_label` from `_name_or_path` and the folder name.
//! (A `README.md` model card is not read.)

use std::sync::OnceLock;

use regex::Regex;

/// The naming keys, each optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Naming {
    /// `general.name`.
    pub name: Option<String>,
    /// `general.organization`.
    pub organization: Option<String>,
    /// `general.basename`.
    pub basename: Option<String>,
    /// `general.finetune`.
    pub finetune: Option<String>,
    /// `general.version`.
    pub version: Option<String>,
    /// `general.size_label`.
    pub size_label: Option<String>,
}

impl Naming {
    /// The keys in gguf-py's order (`set_gguf_meta_model`).
    pub fn kvs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut push = |k: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                out.push((k, v.clone()));
            }
        };
        push("general.name", &self.name);
        push("general.version", &self.version);
        push("general.organization", &self.organization);
        push("general.finetune", &self.finetune);
        push("general.basename", &self.basename);
        push("general.size_label", &self.size_label);
        out
    }
}

/// The components of a model id: full name, organization, basename, finetune, version, size label.
type Components = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).unwrap_or_else(|_| unreachable!("constant regex")))
}

fn version_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^(?:(v|iter)?\d+([.]\d+)*)$")
}
fn type_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^(?:i?q\d(_\w)*|b?fp?(16|32))$")
}
fn size_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(
        &R,
        r"(?i)^(?:(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl))$",
    )
}
fn finetune_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"(?i)^(?:chat|instruct|vision|lora)$")
}
fn title_skip_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    re(&R, r"^(v\d+(?:\.\d+)*|\d.*)$")
}

/// Python's `str.islower()`.
fn py_islower(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_uppercase() {
            return false;
        }
        if c.is_lowercase() {
            cased = true;
        }
    }
    cased
}

/// Python's `str.title()`.
fn py_title(s: &str) -> String {
    let mut out = String::new();
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = c.is_uppercase() || c.is_lowercase();
        if cased && !prev_cased {
            out.extend(c.to_uppercase());
        } else if cased {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// gguf-py `Metadata.id_to_title`.
pub fn id_to_title(s: &str) -> String {
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            if py_islower(w) && !title_skip_re().is_match(w) {
                py_title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// gguf-py `Metadata.get_model_id_components`.
pub fn model_id_components(model_id: &str, total_params: i64) -> Components {
    if model_id.contains(' ') {
        return (Some(model_id.to_string()), None, None, None, None, None);
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, f)) => (Some(o.to_string()), f.to_string()),
        None => (None, model_id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full
        .split('-')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut types: Vec<Vec<&'static str>> = vec![Vec::new(); parts.len()];
    let add = |t: &mut Vec<&'static str>, x: &'static str| {
        if !t.contains(&x) {
            t.push(x);
        }
    };
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if version_re().is_match(&part) {
            add(&mut types[i], "version");
        } else if type_re().is_match(&part) {
            add(&mut types[i], "type");
            parts[i] = part.to_uppercase();
        } else if i > 0 && size_re().is_match(&part) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            if p.last().is_some_and(|c| c.is_ascii_digit()) && p.len() >= 2 {
                let n = p.len();
                let (a, b) = (p[n - 2], p[n - 1]);
                p.truncate(n - 2);
                p.extend(['.', b, a]);
            }
            let n = p.len();
            if n > 1 && p[n - 2].is_ascii_digit() && "kmbt".contains(p[n - 1]) {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            if total_params != 0 {
                let head: String = p[..p.len() - 1].iter().collect();
                let last = p[p.len() - 1];
                if let Ok(v) = head.parse::<f64>() {
                    let exp = " KMBT".find(last).map(|e| e as i32).unwrap_or(-1);
                    let label = v * 1000f64.powi(exp);
                    let t = total_params;
                    let context_like = (t < 0 && label < (t.abs() / 8) as f64)
                        || (t > 0 && (label - t as f64).abs() > (7 * t / 8) as f64);
                    if context_like {
                        add(&mut types[i], "finetune");
                        let k = p.len() - 1;
                        p[k] = p[k].to_ascii_lowercase();
                    }
                }
            }
            if types[i].is_empty() {
                add(&mut types[i], "size_label");
            }
            parts[i] = p.into_iter().collect();
        } else if i > 0 && finetune_re().is_match(&part) {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                add(&mut types[i], "type");
            } else {
                add(&mut types[i], "finetune");
            }
        }
    }
    let any_numeric_size = parts
        .iter()
        .zip(&types)
        .any(|(n, t)| t.contains(&"size_label") && n.chars().any(|c| c.is_numeric()));
    if any_numeric_size {
        for (n, t) in parts.iter().zip(types.iter_mut()) {
            if t.contains(&"size_label") && n.chars().all(char::is_alphabetic) {
                t.retain(|x| *x != "size_label");
            }
        }
    }
    let mut at_start = true;
    for (part, t) in parts.iter().zip(types.iter_mut()) {
        let first_alpha = part.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((t.is_empty() && first_alpha) || t.contains(&"version")) {
            add(t, "basename");
        } else {
            at_start = false;
            if t.is_empty() {
                add(t, "finetune");
            }
        }
    }
    for t in types.iter_mut().rev() {
        if t.contains(&"basename") && t.len() > 1 {
            t.retain(|x| *x != "basename");
        } else {
            break;
        }
    }
    let join = |pred: &dyn Fn(&Vec<&'static str>) -> bool| -> Option<String> {
        let mut picked: Vec<&str> = Vec::new();
        for (n, t) in parts.iter().zip(&types) {
            if pred(t) {
                picked.push(n);
            }
        }
        (!picked.is_empty()).then(|| picked.join("-"))
    };
    let mut basename = join(&|t| t.contains(&"basename"));
    let size_label = {
        let mut seen: Vec<&str> = Vec::new();
        for (n, t) in parts.iter().zip(&types) {
            if t.contains(&"size_label") && !seen.contains(&n.as_str()) {
                seen.push(n);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    let finetune = join(&|t| t.contains(&"finetune"));
    let version = join(&|t| t.contains(&"version") && !t.contains(&"basename"));
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    (Some(full), org, basename, finetune, version, size_label)
}

/// gguf-py `model_weight_count_rounded_notation(n, min_digits=2)`.
pub fn rounded_count(n: u64) -> String {
    let x = n as f64;
    let (scaled, suffix) = if x > 1e12 {
        (x * 1e-12, "T")
    } else if x > 1e9 {
        (x * 1e-9, "B")
    } else if x > 1e6 {
        (x * 1e-6, "M")
    } else {
        (x * 1e-3, "K")
    };
    let rounded = format!("{}", scaled.round_ties_even() as u64);
    let digits = rounded.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}

/// The naming keys for a model folder named `folder_name`, with `config.json`'s `_name_or_path`
/// and the parameter count of the written tensors.
pub fn naming(folder_name: &str, name_or_path: Option<&str>, total_params: u64) -> Naming {
    let total = i64::try_from(total_params).unwrap_or(i64::MAX);
    let mut m = Naming::default();
    let apply = |m: &mut Naming, id: &str| {
        let (full, org, basename, finetune, version, size_label) = model_id_components(id, total);
        if m.name.is_none() {
            m.name = full.map(|f| id_to_title(&f));
        }
        if m.organization.is_none() {
            m.organization = org.map(|o| id_to_title(&o));
        }
        m.basename = m.basename.take().or(basename);
        m.finetune = m.finetune.take().or(finetune);
        m.version = m.version.take().or(version);
        m.size_label = m.size_label.take().or(size_label);
    };
    if let Some(id) = name_or_path.filter(|s| s.matches('/').count() <= 1) {
        apply(&mut m, id);
    }
    apply(&mut m, folder_name);
    if m.name.is_none() {
        m.name = Some(folder_name.to_string());
    }
    if m.size_label.is_none() && total_params > 0 {
        m.size_label = Some(rounded_count(total_params));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_names() {
        let n = naming("llama-tiny", None, 3_201_184);
        assert_eq!(n.name.as_deref(), Some("Llama Tiny"));
        assert_eq!(n.size_label.as_deref(), Some("3.2M"));
        assert_eq!(n.basename, None);
        assert_eq!(
            naming("qwen2-tiny", None, 2_457_232).size_label.as_deref(),
            Some("2.5M")
        );
        assert_eq!(
            naming("llama-spm-tiny", None, 213_000).name.as_deref(),
            Some("Llama Spm Tiny")
        );
    }

    #[test]
    fn hf_style_ids() {
        // Values from gguf-py's own tests (tests/test_metadata.py).
        let c = model_id_components("Mixtral-8x7B-Instruct-v0.1", 0);
        assert_eq!(
            c,
            (
                Some("Mixtral-8x7B-Instruct-v0.1".into()),
                None,
                Some("Mixtral".into()),
                Some("Instruct".into()),
                Some("v0.1".into()),
                Some("8x7B".into())
            )
        );
        let c = model_id_components("SmolLM2-135M-Instruct", 135_000_000);
        assert_eq!(c.2.as_deref(), Some("SmolLM2"));
        assert_eq!(c.3.as_deref(), Some("Instruct"));
        assert_eq!(c.5.as_deref(), Some("135M"));
        let c = model_id_components("bloom-7b1", 0);
        assert_eq!(c.5.as_deref(), Some("7.1B"));
        assert_eq!(
            id_to_title("smollm2-135m-instruct"),
            "Smollm2 135m Instruct"
        );
    }

    #[test]
    fn rounded_counts() {
        assert_eq!(rounded_count(3_201_184), "3.2M");
        assert_eq!(rounded_count(134_515_008), "135M");
        assert_eq!(rounded_count(1_777_088_000), "1.8B");
        assert_eq!(rounded_count(213_344), "213K");
    }
}
