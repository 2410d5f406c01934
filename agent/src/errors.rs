//! Error text for logs: an error with every cause under it.

/// `e` and its causes, one after the other ("client error (Connect): tcp connect error:
/// Connection refused"): a TLS or connect error sits a few levels down.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
