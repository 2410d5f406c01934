//! Every serde problem of one config section, not only the first.
//!
//! serde stops at the first error. To find the next one, the section (a parsed TOML value) is
//! deserialized again with the offending value set aside: an unknown key is removed; a bad
//! value is replaced by a stand-in that deserializes (the key's default where it has one,
//! else a neutral value of some type: `1`, `"1s"`, `[]`, `{}`, a variant the error names, or a
//! good element of the same array, so array indices never shift); a missing required key gets
//! one. A stand-in is kept only if the next error lies elsewhere, so no error is ever caused
//! by a stand-in; bounded by [`MOST`] problems per section. serde_path_to_error gives each error
//! its full key path.
//!
//! The semantic checks (`validate()`) then run on the sections that deserialized; what they
//! say about a stand-in ([`Section::caused_by_stand_in`]) is not reported.

use super::locate::{self, Seg};
use super::wording::{expected_names, explain, names_word, unknown_key, with_value};
use agent::config::ConfigProblem;
use serde::de::DeserializeOwned;
use toml::Value;

/// Most serde problems reported per section.
pub const MOST: usize = 64;

/// One section after deserialization: the value if it deserialized (with stand-ins, if there
/// were problems), every problem found, and the key paths that hold a stand-in.
pub struct Section<T> {
    /// The section, if it deserialized.
    pub value: Option<T>,
    /// Every serde problem, with full key paths.
    pub problems: Vec<ConfigProblem>,
    /// Key paths given a stand-in for a bad or missing value.
    pub stand_ins: Vec<String>,
}

impl<T> Section<T> {
    /// The semantic problems `found` (by `validate()`) that the file is to blame for, each with
    /// its value where the message does not show it.
    pub fn semantic(&self, raw: &toml::Table, found: Vec<ConfigProblem>) -> Vec<ConfigProblem> {
        found
            .into_iter()
            .filter(|p| !self.caused_by_stand_in(p))
            .map(|p| with_value(raw, p))
            .collect()
    }

    /// Whether a semantic problem may come from a stand-in rather than the file: it is at or
    /// under a stand-in, or in the same table and names the stand-in's key.
    pub fn caused_by_stand_in(&self, p: &ConfigProblem) -> bool {
        self.stand_ins.iter().any(|s| {
            if locate::under(&p.path, s) {
                return true;
            }
            let (parent, key) = s.rsplit_once('.').unwrap_or(("", s));
            let same_table = p.path.rsplit_once('.').map_or("", |(t, _)| t) == parent;
            let key = key.split('[').next().unwrap_or(key);
            same_table && names_word(&p.message, key)
        })
    }
}

/// Deserializes `section` (the value of the top-level key `prefix`) as a `T`, collecting every
/// problem.
pub fn collect<T: DeserializeOwned>(prefix: &str, section: &Value) -> Section<T> {
    let mut work = section.clone();
    let mut out = Section {
        value: None,
        problems: Vec::new(),
        stand_ins: Vec::new(),
    };
    let mut patches: Vec<Patch> = Vec::new();
    let mut next = attempt::<T>(&work);
    for _ in 0..MOST * 4 {
        let f = match next {
            Ok(v) => {
                out.value = Some(v);
                break;
            }
            Err(f) => f,
        };
        // An error under a stand-in is the stand-in's, not the file's: a removed key turned
        // out to be required (serde says so only at the end of its table). Try the next one.
        if let Some(k) = patches.iter().position(|p| f.site.starts_with(&p.site)) {
            let p = patches.remove(k);
            match stand_in::<T>(&mut work, p.site, &p.message, p.next) {
                Some((p, after)) => {
                    patches.push(p);
                    next = after;
                    continue;
                }
                None => break,
            }
        }
        if out.problems.len() == MOST {
            out.problems.push(ConfigProblem::new(
                prefix,
                format!("stopped after {MOST} problems in this section: fix these and check again"),
            ));
            break;
        }
        out.problems.push(describe(prefix, &f, &work));
        if let Kind::Unknown = f.kind {
            if !put(&mut work, &f.site, None) {
                break;
            }
            next = attempt(&work);
            continue;
        }
        match stand_in::<T>(&mut work, f.site, &f.message, 0) {
            Some((p, after)) => {
                patches.push(p);
                next = after;
            }
            None => break,
        }
    }
    out.stand_ins = patches
        .iter()
        .map(|p| locate::display(prefix, &p.site))
        .collect();
    out
}

/// A stand-in in place: where, which candidate comes next if it must be replaced, and the
/// error it stands in for.
struct Patch {
    site: Vec<Seg>,
    next: usize,
    message: String,
}

/// One serde error: where (full path in the section), what kind, serde's message.
struct Failure {
    site: Vec<Seg>,
    kind: Kind,
    message: String,
}

enum Kind {
    /// A key the table does not take (`site` ends with it).
    Unknown,
    /// A required key that is absent (`site` ends with it).
    Missing,
    /// A value of the wrong type or form.
    Bad,
}

fn attempt<T: DeserializeOwned>(v: &Value) -> Result<T, Failure> {
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let mut site: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                _ => None,
            })
            .collect();
        let message = e.inner().message().to_string();
        let quoted = |lead: &str| {
            let rest = message.strip_prefix(lead)?;
            Some(rest[..rest.find('`')?].to_string())
        };
        let kind = if let Some(k) = quoted("unknown field `") {
            if site.last() != Some(&Seg::Key(k.clone())) {
                site.push(Seg::Key(k));
            }
            Kind::Unknown
        } else if let Some(k) = quoted("missing field `") {
            site.push(Seg::Key(k));
            Kind::Missing
        } else {
            Kind::Bad
        };
        Failure {
            site,
            kind,
            message,
        }
    })
}

/// Sets a stand-in at `site` (or, if none fits there, at an enclosing key), trying candidates
/// from number `from` on, such that the next error, if any, is elsewhere; returns the patch
/// and that next attempt.
fn stand_in<T: DeserializeOwned>(
    work: &mut Value,
    mut site: Vec<Seg>,
    message: &str,
    mut from: usize,
) -> Option<(Patch, Result<T, Failure>)> {
    while !site.is_empty() {
        let all = candidates(work, &site, message);
        for (i, candidate) in all.into_iter().enumerate().skip(from) {
            let mut trial = work.clone();
            if !put(&mut trial, &site, candidate) {
                continue;
            }
            let after = attempt::<T>(&trial);
            if after
                .as_ref()
                .err()
                .is_none_or(|g| !g.site.starts_with(&site))
            {
                *work = trial;
                let patch = Patch {
                    site,
                    next: i + 1,
                    message: message.to_string(),
                };
                return Some((patch, after));
            }
        }
        site.pop();
        from = 0;
    }
    None
}

/// Stand-ins to try at `site`, in order: none (the key's default), a variant named by the
/// error, neutral values of each type, a few other elements of the same array.
fn candidates(work: &Value, site: &[Seg], message: &str) -> Vec<Option<Value>> {
    let mut out = Vec::new();
    if matches!(site.last(), Some(Seg::Key(_))) && locate::get(work, site).is_some() {
        out.push(None);
    }
    if let Some(v) = expected_names(message).into_iter().next() {
        out.push(Some(Value::String(v)));
    }
    out.extend(
        [
            Value::Integer(1),
            Value::Float(1.0),
            Value::Boolean(false),
            Value::String("1s".into()),
            Value::String("127.0.0.1:0".into()),
            Value::String("127.0.0.1".into()),
            Value::Array(Vec::new()),
            Value::Table(toml::Table::new()),
        ]
        .map(Some),
    );
    if let (Some(Seg::Index(i)), Some(Value::Array(a))) =
        (site.last(), locate::get(work, &site[..site.len() - 1]))
    {
        // The nearest earlier ones deserialized already; a few later ones may too.
        let earlier = a[..*i].iter().rev().take(2);
        let later = a.iter().skip(i + 1).take(2);
        out.extend(earlier.chain(later).map(|v| Some(v.clone())));
    }
    out
}

/// Replaces (or with `None` removes) the value at `site`; a missing table key is added. Array
/// elements are never removed, so later indices keep their meaning.
fn put(work: &mut Value, site: &[Seg], v: Option<Value>) -> bool {
    let Some((last, parent)) = site.split_last() else {
        return false;
    };
    match (locate::get_mut(work, parent), last, v) {
        (Some(Value::Table(t)), Seg::Key(k), None) => t.remove(k).is_some(),
        (Some(Value::Table(t)), Seg::Key(k), Some(v)) => {
            t.insert(k.clone(), v);
            true
        }
        (Some(Value::Array(a)), Seg::Index(i), Some(v)) if *i < a.len() => {
            a[*i] = v;
            true
        }
        _ => false,
    }
}

fn describe(prefix: &str, f: &Failure, work: &Value) -> ConfigProblem {
    let path = locate::display(prefix, &f.site);
    let message = match f.kind {
        Kind::Unknown => unknown_key(&f.site, &f.message),
        Kind::Missing => "missing: this key is required".to_string(),
        Kind::Bad => explain(&f.message, locate::get(work, &f.site), &f.site),
    };
    ConfigProblem::new(path, message)
}
