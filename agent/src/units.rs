//! The one grammar for sizes and durations in every config section of every role.
//!
//! - [`ByteSize`]: an integer of bytes (`1048576`) or a string of a whole number and a unit:
//!   `B`, `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB`
//!   (powers of 1024), case-insensitive, with optional space (`"256MiB"`, `"1 GB"`, `"512m"`).
//!   A value that does not fit in 64 bits is an error.
//! - [`Dur`]: a string parsed by the humantime crate: a number and a unit, several of them
//!   added up (`"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`, `"2d"`). A bare number is an error: it
//!   has no unit; so is `M` (humantime's months, most likely meant as minutes).
//!
//! Durations use humantime as it is. Sizes are parsed here: the bytesize crate was the
//! candidate, but it silently saturates an overflowing size (`"99999999999TiB"` becomes
//! 16 EiB) and reports a bad one as "expected parsable string" without naming the grammar.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A size in bytes, written in config as an integer or a string such as `"512MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl std::fmt::Display for ByteSize {
    /// The largest binary unit that divides it exactly: `512MiB`, `20GiB`, `1500B`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if self.0 >= 1 << shift && self.0 % (1 << shift) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A duration, written in config as a string such as `"30s"`, `"250ms"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

/// Parses `"512MiB"`, `"1 GB"`, `"100"` into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let not_a_size = || format!("{s:?} is not a size (use bytes or a string like \"512MiB\")");
    let n: u64 = num.parse().map_err(|_| not_a_size())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(not_a_size()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large a size (at most 16 EiB)"))
}

/// Parses `"30s"`, `"250ms"`, `"5m"`, `"1h 30m"`, `"2d"` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    // humantime reads `M` as months: in a config that is far more likely a typo for minutes.
    if s.split(|c: char| c.is_ascii_digit() || c.is_whitespace())
        .any(|unit| unit == "M")
    {
        return Err(format!(
            "{s:?} is not a duration: write minutes as \"m\" (\"M\" would be months)"
        ));
    }
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration: {e} (write a number and a unit: ms, s, m, h, d)")
    })
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes, as an integer or a string like \"256MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is not a size: sizes are not negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"30s\" or \"250ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        ByteSize(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, want) in [
            ("256MiB", 256 << 20),
            ("1 GB", 1_000_000_000),
            ("100", 100),
            ("64kib", 64 << 10),
            ("2TiB", 2 << 40),
            ("5 B", 5),
            ("512m", 512_000_000),
            ("1G", 1_000_000_000),
            ("3k", 3_000),
        ] {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["lots", "5 parsecs", "99999999999TiB", "1.5GiB", "-1", ""] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn durations() {
        for (text, want) in [
            ("30s", Duration::from_secs(30)),
            ("250ms", Duration::from_millis(250)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(172_800)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in ["30", "soon", "", "5 parsecs", "-1s", "5M", "1h 5M"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("5M").unwrap_err().contains("months"));
    }

    #[test]
    fn both_deserialize_from_toml() {
        #[derive(serde::Deserialize)]
        struct C {
            a: ByteSize,
            b: ByteSize,
            c: Dur,
        }
        let c: C = toml::from_str("a = 1024\nb = \"1MiB\"\nc = \"1m\"").unwrap();
        assert_eq!(
            (c.a.0, c.b.0, c.c.0),
            (1024, 1 << 20, Duration::from_secs(60))
        );
        assert!(toml::from_str::<C>("a = -1\nb = 1\nc = \"1s\"").is_err());
        assert!(toml::from_str::<C>("a = 1\nb = 1\nc = 5").is_err());
    }
}
