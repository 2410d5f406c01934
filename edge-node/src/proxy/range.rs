//! `Range: bytes=` requests (RFC 9110 section 14) against a representation of known length. Pure.

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

/// Evaluates a `Range` field value for a body of `len` bytes. Only single ranges are served as
/// 206; a multi-range request gets the whole body, which RFC 9110 permits.
pub(crate) fn evaluate(range: Option<&str>, len: u64) -> RangeOutcome {
    let Some(r) = range else {
        return RangeOutcome::Full;
    };
    let Some(spec) = r.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeOutcome::Full,
        // suffix: last N bytes
        (true, false) => match num(b) {
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(n) if len > 0 => RangeOutcome::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => RangeOutcome::Unsatisfiable,
            None => RangeOutcome::Full,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeOutcome::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return RangeOutcome::Full,
                }
            };
            if start >= len {
                RangeOutcome::Unsatisfiable
            } else {
                RangeOutcome::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
    }
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
}
