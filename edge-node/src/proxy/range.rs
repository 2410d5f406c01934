//! `Range: bytes=` requests (RFC 9110 section 14): the one range a request asks for, and what
//! it selects of a representation of known length. Pure.

/// What to send for a Range request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeOutcome {
    /// Ignore the Range (absent, not `bytes`, multi-range or malformed): send the whole body.
    Full,
    /// Send bytes `start..=end` as a 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// No requested range overlaps the body: 416.
    Unsatisfiable,
}

/// The single byte range a request asks for, before the length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// `first-last`, both inclusive (`last >= first`).
    FromTo(u64, u64),
    /// `first-`: from `first` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` field value. `None` when it is to be ignored: not `bytes`, more than
    /// one range (served whole, which RFC 9110 permits), or malformed.
    pub(crate) fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?;
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.trim().split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        match (a.is_empty(), b.is_empty()) {
            (true, true) => None,
            (true, false) => num(b).map(ByteRange::Suffix),
            (false, true) => num(a).map(ByteRange::From),
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                (last >= first).then_some(ByteRange::FromTo(first, last))
            }
        }
    }

    /// What this range selects of a body of `len` bytes.
    pub(crate) fn resolve(self, len: u64) -> RangeOutcome {
        match self {
            ByteRange::Suffix(0) => RangeOutcome::Unsatisfiable,
            ByteRange::Suffix(_) if len == 0 => RangeOutcome::Unsatisfiable,
            ByteRange::Suffix(n) => RangeOutcome::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            ByteRange::From(start) | ByteRange::FromTo(start, _) if start >= len => {
                RangeOutcome::Unsatisfiable
            }
            ByteRange::From(start) => RangeOutcome::Partial {
                start,
                end: len - 1,
            },
            ByteRange::FromTo(start, end) => RangeOutcome::Partial {
                start,
                end: end.min(len - 1),
            },
        }
    }
}

/// Evaluates a `Range` field value for a body of `len` bytes. Only single ranges are served as
/// 206; a multi-range request gets the whole body, which RFC 9110 permits.
pub(crate) fn evaluate(range: Option<&str>, len: u64) -> RangeOutcome {
    range
        .and_then(ByteRange::parse)
        .map_or(RangeOutcome::Full, |r| r.resolve(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    #[test]
    fn rfc9110_examples() {
        let len = 10_000;
        let cases = [
            (None, Full),
            (Some("bytes=0-499"), Partial { start: 0, end: 499 }),
            (
                Some("bytes=500-999"),
                Partial {
                    start: 500,
                    end: 999,
                },
            ),
            (
                Some("bytes=-500"),
                Partial {
                    start: 9500,
                    end: 9999,
                },
            ),
            (
                Some("bytes=9500-"),
                Partial {
                    start: 9500,
                    end: 9999,
                },
            ),
            (Some("bytes=0-0"), Partial { start: 0, end: 0 }),
            (
                Some("bytes=-1"),
                Partial {
                    start: 9999,
                    end: 9999,
                },
            ),
            (
                Some("bytes=9000-20000"),
                Partial {
                    start: 9000,
                    end: 9999,
                },
            ),
            (
                Some("bytes=-20000"),
                Partial {
                    start: 0,
                    end: 9999,
                },
            ),
            (Some("bytes=10000-"), Unsatisfiable),
            (Some("bytes=-0"), Unsatisfiable),
            (Some("bytes=0-499,1000-1499"), Full),
            (Some("items=0-5"), Full),
            (Some("bytes=5-1"), Full),
            (Some("bytes=abc-def"), Full),
            (Some("bytes=-"), Full),
            (Some("bytes=1-2-3"), Full),
            (Some("bytes=99999999999999999999999-"), Full),
        ];
        for (input, want) in cases {
            assert_eq!(evaluate(input, len), want, "{input:?}");
        }
        assert_eq!(evaluate(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(evaluate(Some("bytes=-5"), 0), Unsatisfiable);
    }

    #[test]
    fn parsed_before_the_length_is_known() {
        use ByteRange::*;
        assert_eq!(ByteRange::parse("bytes=-5"), Some(Suffix(5)));
        assert_eq!(ByteRange::parse("bytes=6-"), Some(From(6)));
        assert_eq!(ByteRange::parse(" bytes=6 - 8 "), Some(FromTo(6, 8)));
        for ignored in [
            "bytes=8-6",
            "bytes=-",
            "bytes=1-2,4-5",
            "items=1-2",
            "bytes=x-",
            "",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }
}
