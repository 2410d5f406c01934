//! The words of config problems: serde's messages reworded around the value as written
//! (`"12XB" is not a size ...`), "did you mean" for unknown keys, values shown in semantic
//! problems, and never a secret's value.

use super::locate::{self, Seg};
use agent::config::ConfigProblem;
use toml::Value;

/// The names serde lists after "expected" (`` `gzip` or `br` ``).
pub fn expected_names(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once("expected ") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

pub fn unknown_key(site: &[Seg], message: &str) -> String {
    let known = expected_names(message);
    let key = match site.last() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    unknown("key", key, &known)
}

/// "unknown key", with the known name `key` is likely a typo of, or the known names if few.
pub fn unknown(what: &str, key: &str, known: &[impl AsRef<str>]) -> String {
    let near = known
        .iter()
        .map(AsRef::as_ref)
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d);
    let names = || {
        known
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match near {
        Some((_, k)) => format!("unknown {what}; did you mean {k:?}?"),
        None if known.is_empty() || known.len() > 10 => format!("unknown {what}"),
        None => format!("unknown {what} (known: {})", names()),
    }
}

/// Levenshtein distance, for suggesting the key a typo meant.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// serde's message for a bad value, reworded around the value as written.
pub fn explain(message: &str, value: Option<&Value>, site: &[Seg]) -> String {
    let Some(value) = value else {
        return message.to_string();
    };
    let v = shown(value, site);
    for lead in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some((_, expected)) = message
            .strip_prefix(lead)
            .and_then(|m| m.rsplit_once(", expected "))
        {
            return format!("{v} is not {}", plain(expected));
        }
    }
    if message.starts_with("unknown variant `") {
        let names: Vec<String> = expected_names(message)
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        return format!("{v} is not one of {}", names.join(", "));
    }
    match message {
        "invalid socket address syntax" => format!("{v} is not a socket address (IP:port)"),
        "invalid IP address syntax" => format!("{v} is not an IP address"),
        m if m.starts_with("data did not match any variant of untagged enum OneOrMany") => {
            format!("{v} is not a string or an array of strings")
        }
        m if mentions(m, value) => m.to_string(),
        m => format!("{m} (got {v})"),
    }
}

/// What serde expected, in the words of the config docs.
fn plain(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map" => "a table".into(),
        "a boolean" => "true or false".into(),
        "string only" => "a string".into(),
        e if e.starts_with("struct ") => "a table".into(),
        e if e.starts_with("enum ") => "a string".into(),
        e => e.into(),
    }
}

/// Keys whose values are never repeated in a message (they end up in logs).
fn secret(site: &[Seg]) -> bool {
    site.iter().any(|s| {
        matches!(s, Seg::Key(k) if k.contains("token") || k.contains("secret")
            || k == "eab_hmac_key" || k == "headers")
    })
}

/// A value as written in TOML (`"12XB"`, `5`, `["a"]`), shortened; a secret's type only.
pub fn shown(v: &Value, site: &[Seg]) -> String {
    if secret(site) {
        return match v {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a date",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
        .to_string();
    }
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s,
    }
}

/// Whether `message` already shows `value`.
fn mentions(message: &str, value: &Value) -> bool {
    let s = value.to_string();
    message.contains(&s)
        || value
            .as_str()
            .is_some_and(|raw| message.contains(&format!("{raw:?}")))
}

/// A semantic problem with the value it is about, as written in `raw`, when the message does
/// not show it already (scalars only; never a secret).
pub fn with_value(raw: &toml::Table, mut p: ConfigProblem) -> ConfigProblem {
    let segs = locate::parse(&p.path);
    let Some((Seg::Key(first), rest)) = segs.split_first() else {
        return p;
    };
    let scalar = raw
        .get(first)
        .and_then(|v| locate::get(v, rest))
        .filter(|v| !matches!(v, Value::Array(_) | Value::Table(_)));
    if let Some(v) = scalar {
        if !secret(&segs) && !mentions(&p.message, v) {
            p.message = format!("{} (got {})", p.message, shown(v, &segs));
        }
    }
    p
}

/// Whether `text` has `word` as a whole word (`_` counts as part of a word).
pub fn names_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = text[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_key_a_typo_meant() {
        assert_eq!(distance("lisen", "listen"), 1);
        assert_eq!(distance("", "ab"), 2);
        let m = "unknown field `lisen`, expected one of `listen`, `tls_listen`";
        assert_eq!(
            unknown_key(&[Seg::Key("lisen".into())], m),
            "unknown key; did you mean \"listen\"?"
        );
        let m = "unknown field `zzz`, expected `a` or `b`";
        assert_eq!(
            unknown_key(&[Seg::Key("zzz".into())], m),
            "unknown key (known: a, b)"
        );
    }

    #[test]
    fn words_and_secrets() {
        assert!(names_word("listen or tls_listen", "listen"));
        assert!(!names_word("tls_listen only", "listen"));
        let v = Value::String("hunter2".into());
        assert_eq!(shown(&v, &[Seg::Key("token".into())]), "a string");
        assert_eq!(shown(&v, &[Seg::Key("name".into())]), "\"hunter2\"");
    }
}
