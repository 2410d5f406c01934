//! Site rules: what operators write in VCL or a CDN's rule editor, as config. A site holds
//! an ordered list; each rule has conditions (`matcher.rs`) and actions (`actions.rs`).
//!
//! Evaluation, once per request right after routing (`proxy/route.rs`):
//! - rules are tried in order; a rule matches when all its conditions hold;
//! - by default the first matching rule ends evaluation (first match); a rule with
//!   `continue = true` lets the rules after it be tried too;
//! - a matching rule that answers (redirect, fixed response) always ends evaluation;
//! - of the rules that matched, for a setting that has one value (edge TTL, client TTL,
//!   bypass, stale windows, query mode, origins, compression) the last one that sets it
//!   wins; lists add up (header edits are applied in rule order, limiters all count, key
//!   additions all apply).
//!
//! The result is a `Matched` set (a bit per rule, so at most `MAX_RULES` per site): a
//! request carries it, and each phase asks it for what concerns it. A site without rules
//! pays one branch. Key additions ride on Vary (`key.rs`); freshness goes to the policy as
//! `crate::cache::policy::RuleFreshness`.

pub(crate) mod actions;
mod check;
pub mod config;
pub(crate) mod geo;
pub(crate) mod key;
pub(crate) mod matcher;

use actions::Actions;
use matcher::{Conditions, Subject};
use std::sync::Arc;

/// Rules a site may have (one bit each in `Matched`).
pub(crate) const MAX_RULES: usize = 64;

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    /// Its name (or `rules[N]`).
    pub name: String,
    pub cond: Conditions,
    pub actions: Actions,
    /// Evaluation goes on after it.
    pub cont: bool,
    /// Its redirect upgrades to HTTPS (so it matches plain HTTP requests only).
    https_upgrade: bool,
}

/// The rules that matched one request: bit `i` is rule `i`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Matched(u64);

impl Matched {
    /// Whether no rule matched.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The indexes of the rules, in order (set bits only: a request that matched two rules
    /// costs two steps, not 64).
    pub(crate) fn indexes(self) -> Bits {
        Bits(self.0)
    }
}

/// The set bits of a [`Matched`], low to high (or high to low from the back).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bits(u64);

impl Iterator for Bits {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(i)
    }
}

impl DoubleEndedIterator for Bits {
    fn next_back(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let i = 63 - self.0.leading_zeros() as usize;
        self.0 &= !(1u64 << i);
        Some(i)
    }
}

/// The ordered rules of a site.
#[derive(Debug)]
pub(crate) struct RuleSet {
    rules: Vec<Rule>,
    /// By the path's second byte (the one after `/`), the rules that can match such a path:
    /// those whose path prefix has that byte there, and those without a prefix that long.
    /// Evaluation tries only these, in order (most rules, on most paths, are never looked at).
    by_byte: Box<[u64; 256]>,
    /// The rules for a path of one byte (`/`): those without a prefix of two bytes or more.
    unprefixed: u64,

    /// The country database, for rules with a `country` condition.
    geo: Option<Arc<geo::GeoIp>>,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            by_byte: Box::new([0; 256]),
            unprefixed: 0,
            geo: None,
        }
    }
}

impl RuleSet {
    /// Compiles `configs` (which passed `problems()`); `finish` completes each rule's actions
    /// with what only the site can build (origin pool, limiters).
    pub(crate) fn new(
        configs: &[config::RuleConfig],
        geo: Option<Arc<geo::GeoIp>>,
        mut finish: impl FnMut(usize, &config::RuleConfig, &mut Actions) -> Result<(), String>,
    ) -> Result<Self, String> {
        if configs.len() > MAX_RULES {
            return Err(format!(
                "{} rules: a site has at most {MAX_RULES}",
                configs.len()
            ));
        }
        let mut rules = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let name = c.display_name(i);
            let mut actions = Actions::new(c).map_err(|e| format!("rule {name}: {e}"))?;
            finish(i, c, &mut actions)?;
            rules.push(Rule {
                name,
                cond: Conditions::new(c).map_err(|e| format!("rule {}: {e}", c.display_name(i)))?,
                actions,
                cont: c.continue_,
                https_upgrade: c.redirect.as_ref().is_some_and(|r| r.https),
            });
        }
        let wants_geo = rules.iter().any(|r| r.cond.wants_country());
        let mut by_byte = Box::new([0u64; 256]);
        let mut unprefixed = 0u64;
        for (i, r) in rules.iter().enumerate() {
            match r.cond.path_prefix().as_bytes().get(1) {
                Some(b) => by_byte[usize::from(*b)] |= 1 << i,
                None => unprefixed |= 1 << i,
            }
        }
        for m in by_byte.iter_mut() {
            *m |= unprefixed;
        }
        Ok(RuleSet {
            rules,
            by_byte,
            unprefixed,
            geo: if wants_geo { geo } else { None },
        })
    }

    /// Whether the site has no rules.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in order.
    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The database country conditions consult.
    pub(crate) fn geo(&self) -> Option<&geo::GeoIp> {
        self.geo.as_deref()
    }

    /// The rules that match `s`, by the semantics in the module docs; `https` says whether
    /// the request came over TLS.
    pub(crate) fn evaluate(&self, s: &Subject<'_>, https: bool) -> Matched {
        let candidates = match s.path.as_bytes().get(1) {
            Some(b) => self.by_byte[usize::from(*b)],
            None => self.unprefixed,
        };
        let mut m = 0u64;
        for i in Bits(candidates) {
            let Some(r) = self.rules.get(i) else { break };
            if (r.https_upgrade && https) || !r.cond.holds(s) {
                continue;
            }
            m |= 1 << i;
            if r.actions.answers() || !r.cont {
                break;
            }
        }
        Matched(m)
    }

    /// The matched rules, in order.
    pub(crate) fn matched(&self, m: Matched) -> impl DoubleEndedIterator<Item = &Rule> {
        m.indexes().filter_map(|i| self.rules.get(i))
    }

    /// The value the last matched rule that sets one gives.
    pub(crate) fn last<'a, T>(
        &'a self,
        m: Matched,
        f: impl Fn(&'a Actions) -> Option<T>,
    ) -> Option<T> {
        if m.is_empty() {
            return None;
        }
        self.matched(m).rev().find_map(|r| f(&r.actions))
    }

    /// Whether any matched rule says so.
    pub(crate) fn any(&self, m: Matched, f: impl Fn(&Actions) -> bool) -> bool {
        !m.is_empty() && self.matched(m).any(|r| f(&r.actions))
    }

    /// The freshness the matched rules ask of the policy.
    pub(crate) fn freshness(&self, m: Matched) -> crate::cache::policy::RuleFreshness {
        crate::cache::policy::RuleFreshness {
            ttl: self.last(m, |a| a.edge_ttl),
            ttl_override: self
                .last(m, |a| a.edge_ttl.map(|_| a.ttl_override))
                .unwrap_or(false),
            swr: self.last(m, |a| a.swr),
            sie: self.last(m, |a| a.sie),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method};

    fn set(toml: &str) -> RuleSet {
        #[derive(serde::Deserialize)]
        struct Doc {
            rules: Vec<config::RuleConfig>,
        }
        let d: Doc = toml::from_str(toml).unwrap();
        RuleSet::new(&d.rules, None, |_, _, _| Ok(())).unwrap()
    }

    fn eval(rs: &RuleSet, path: &str) -> Vec<usize> {
        let h = HeaderMap::new();
        let s = Subject {
            method: &Method::GET,
            host: "h",
            path,
            query: None,
            headers: &h,
            client: "127.0.0.1".parse().unwrap(),
            geo: None,
        };
        rs.evaluate(&s, false).indexes().collect()
    }

    #[test]
    fn first_match_continue_and_answers() {
        let rs = set(r#"
            [[rules]]
            path = "/a/"
            edge_ttl = "10s"
            continue = true
            [[rules]]
            path = "/a/b"
            edge_ttl = "20s"
            [[rules]]
            path = "/a/"
            edge_ttl = "30s"
            [[rules]]
            path = "/x"
            respond = { status = 403 }
            continue = true
            [[rules]]
            edge_ttl = "1s"
        "#);
        assert_eq!(eval(&rs, "/a/b"), vec![0, 1]);
        assert_eq!(eval(&rs, "/a/c"), vec![0, 2]);
        assert_eq!(eval(&rs, "/x"), vec![3]);
        assert_eq!(eval(&rs, "/y"), vec![4]);
        assert_eq!(eval(&rs, "/"), vec![4]);
        assert_eq!(eval(&rs, ""), vec![4]);
        let m = Matched(0b11);
        assert_eq!(
            rs.freshness(m).ttl,
            Some(std::time::Duration::from_secs(20))
        );
    }

    #[test]
    fn too_many_rules_are_refused() {
        let many = "[[rules]]\npath = \"/\"\n".repeat(MAX_RULES + 1);
        #[derive(serde::Deserialize)]
        struct Doc {
            rules: Vec<config::RuleConfig>,
        }
        let d: Doc = toml::from_str(&many).unwrap();
        assert!(RuleSet::new(&d.rules, None, |_, _, _| Ok(())).is_err());
    }
}
