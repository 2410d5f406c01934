//! TXT records for ACME DNS-01 (RFC 8555 8.4): `_acme-challenge.NAME` values published through
//! the admin API while a certificate order waits, and removed after. They are answered
//! authoritatively for names inside the served zones (with TTL 0), survive zone reloads, and
//! never change the configured records.

use crate::wire::Answer;
use crate::zone::{encode, wire};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::RwLock;

/// Most names published at once (the admin API must not grow memory without bound).
const MAX_NAMES: usize = 256;

/// The label every DNS-01 record starts with.
const LABEL: &str = "_acme-challenge.";

/// One published name and its values.
type Published = (Name, Vec<String>);

/// The published challenge records: name (wire form, lower case) -> its values.
#[derive(Debug, Default)]
pub struct AcmeTxt(RwLock<HashMap<Box<[u8]>, Published>>);

impl AcmeTxt {
    /// Publishes `value` at `name` (`_acme-challenge.example.com`), beside values already
    /// there (a certificate for `example.com` and `*.example.com` has two).
    pub fn add(&self, name: &str, value: &str) -> Result<(), String> {
        let parsed = parse(name)?;
        if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("a challenge value is 1 to 255 visible ASCII characters".into());
        }
        let key = wire(&parsed);
        let mut m = self.0.write().map_err(|_| "poisoned")?;
        if m.len() >= MAX_NAMES && !m.contains_key(&key) {
            return Err(format!("at most {MAX_NAMES} challenge names at once"));
        }
        let entry = m.entry(key).or_insert_with(|| (parsed, Vec::new()));
        if !entry.1.iter().any(|v| v == value) {
            if entry.1.len() >= 8 {
                return Err(format!("{name}: at most 8 challenge values at once"));
            }
            entry.1.push(value.to_string());
        }
        Ok(())
    }

    /// Withdraws `value` from `name`.
    pub fn remove(&self, name: &str, value: &str) -> Result<(), String> {
        let key = wire(&parse(name)?);
        let mut m = self.0.write().map_err(|_| "poisoned")?;
        if let Some(entry) = m.get_mut(&key) {
            entry.1.retain(|v| v != value);
            if entry.1.is_empty() {
                m.remove(&key);
            }
        }
        Ok(())
    }

    /// The answer to a TXT query for `qname` (wire form, lower case), if records are there.
    pub(crate) fn answer(&self, qname: &[u8]) -> Option<Answer> {
        let m = self.0.read().ok()?;
        let (name, values) = m.get(qname)?;
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record::from_rdata(name.clone(), 0, RData::TXT(TXT::new(vec![v.clone()]))))
            .collect();
        Some(encode(
            name,
            RecordType::TXT,
            crate::wire::rcode::NOERROR,
            &records,
            &[],
            &[],
        ))
    }
}

fn parse(name: &str) -> Result<Name, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if !lower.starts_with(LABEL) {
        return Err(format!(
            "{name:?}: only {LABEL}NAME records can be published"
        ));
    }
    let mut n = Name::from_str(&lower).map_err(|e| format!("{name:?}: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_challenge_names_and_sane_values_are_taken() {
        let t = AcmeTxt::default();
        assert!(t.add("www.example.test", "v").is_err());
        assert!(t.add("_acme-challenge.example.test", "").is_err());
        assert!(t.add("_acme-challenge.example.test", "a b").is_err());
        assert!(t.add("_acme-challenge..test", "v").is_err());
        t.add("_acme-challenge.Example.test.", "one").unwrap();
        t.add("_acme-challenge.example.test", "two").unwrap();
        let key = wire(&parse("_acme-challenge.example.test").unwrap());
        let a = t.answer(&key).unwrap();
        assert_eq!(a.counts[0], 2);
        t.remove("_acme-challenge.example.test", "one").unwrap();
        assert_eq!(t.answer(&key).unwrap().counts[0], 1);
        t.remove("_acme-challenge.example.test", "two").unwrap();
        assert!(t.answer(&key).is_none());
    }

    #[test]
    fn the_number_of_names_is_bounded() {
        let t = AcmeTxt::default();
        for i in 0..MAX_NAMES {
            t.add(&format!("_acme-challenge.n{i}.test"), "v").unwrap();
        }
        let e = t.add("_acme-challenge.one-more.test", "v").unwrap_err();
        assert!(e.contains("at most"), "{e}");
        // A name already there still takes another value.
        t.add("_acme-challenge.n0.test", "w").unwrap();
    }
}
