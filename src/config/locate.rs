//! Key paths (`edge.sites[0].origins[1]`) as segments, and the line of the file they point at.

use std::fmt::Write as _;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key of a table.
    Key(String),
    /// An element of an array (or array of tables).
    Index(usize),
}

/// `prefix` followed by `segs`, dotted, with indices in brackets: `edge.sites[0].origins`.
pub fn display(prefix: &str, segs: &[Seg]) -> String {
    let mut out = prefix.to_string();
    for s in segs {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// The segments of a dotted path (the inverse of [`display`] for keys without `.` or `[`).
pub fn parse(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Seg::Key(key.to_string()));
        }
        for idx in pieces {
            match idx.trim_end_matches(']').parse() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => out.push(Seg::Key(format!("[{idx}"))),
            }
        }
    }
    out
}

/// Whether `path` is `base` or lies under it (`edge.listen[1]` under `edge.listen`).
pub fn under(path: &str, base: &str) -> bool {
    path.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The value at `segs` in a TOML value.
pub fn get<'a>(v: &'a toml::Value, segs: &[Seg]) -> Option<&'a toml::Value> {
    segs.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.as_table()?.get(k),
        Seg::Index(i) => v.as_array()?.get(*i),
    })
}

/// The value at `segs` in a TOML value, to change it.
pub fn get_mut<'a>(v: &'a mut toml::Value, segs: &[Seg]) -> Option<&'a mut toml::Value> {
    segs.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.as_table_mut()?.get_mut(k),
        Seg::Index(i) => v.as_array_mut()?.get_mut(*i),
    })
}

/// The 1-based line of byte `offset` in `src`.
pub fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Finds the lines of key paths in one parsed file.
pub struct Lines<'a> {
    src: &'a str,
    doc: Option<toml_edit::Document<&'a str>>,
}

impl<'a> Lines<'a> {
    /// Parses `src` once for every later look-up.
    pub fn new(src: &'a str) -> Self {
        Self {
            src,
            doc: toml_edit::Document::parse(src).ok(),
        }
    }

    /// The line of the deepest part of `path` present in the file: the key itself, or for a
    /// missing key the table that lacks it.
    pub fn line(&self, path: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        walk(doc.as_table(), &parse(path), None).map(|o| line_of(self.src, o))
    }
}

fn walk(table: &dyn toml_edit::TableLike, segs: &[Seg], best: Option<usize>) -> Option<usize> {
    let Some((Seg::Key(name), rest)) = segs.split_first() else {
        return best;
    };
    let Some((key, item)) = table.get_key_value(name) else {
        return best;
    };
    let best = key.span().map(|s| s.start).or(best);
    walk_item(item, rest, best)
}

fn walk_item(item: &toml_edit::Item, segs: &[Seg], best: Option<usize>) -> Option<usize> {
    match segs.first() {
        None => best,
        Some(Seg::Index(i)) => {
            if let Some(t) = item.as_array_of_tables().and_then(|a| a.get(*i)) {
                let best = t.span().map(|s| s.start).or(best);
                return walk(t, &segs[1..], best);
            }
            match item.as_array().and_then(|a| a.get(*i)) {
                Some(v) => walk_value(v, &segs[1..], v.span().map(|s| s.start).or(best)),
                None => best,
            }
        }
        Some(Seg::Key(_)) => match item.as_table_like() {
            Some(t) => walk(t, segs, best),
            None => best,
        },
    }
}

fn walk_value(v: &toml_edit::Value, segs: &[Seg], best: Option<usize>) -> Option<usize> {
    match (segs.first(), v) {
        (Some(Seg::Key(_)), toml_edit::Value::InlineTable(t)) => walk(t, segs, best),
        (Some(Seg::Index(i)), toml_edit::Value::Array(a)) => match a.get(*i) {
            Some(e) => walk_value(e, &segs[1..], e.span().map(|s| s.start).or(best)),
            None => best,
        },
        _ => best,
    }
}
