//! A rule's conditions, compiled: path prefix, glob (globset) and regex (regex), method, host,
//! header, cookie, query parameter, client network and country. All must hold. Pure: the
//! request is a [`Subject`].

use super::config::{FieldMatch, RuleConfig};
use http::{HeaderMap, HeaderName, Method};
use std::net::IpAddr;

/// What conditions look at: the routed request.
pub(crate) struct Subject<'a> {
    pub method: &'a Method,
    /// The normalised host.
    pub host: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// The query as sent.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client: IpAddr,
    /// The country database, when the node has one.
    pub geo: Option<&'a super::geo::GeoIp>,
}

/// The path glob of `g` (parsed by globset), as the byte regex it stands for, or why it is
/// not one. Matched as a regex on the path's bytes: globset's own matcher first builds a
/// path candidate (base name, extension) for every call, which the path of a URL needs not.
pub(crate) fn glob(g: &str) -> Result<regex::bytes::Regex, String> {
    let glob = globset::GlobBuilder::new(g)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{g:?} is not a glob: {e}"))?;
    regex::bytes::Regex::new(glob.regex()).map_err(|e| format!("{g:?} is not a glob: {e}"))
}

/// The regular expression of `r`, or why it is not one (the regex crate's own words,
/// which point at the spot).
pub(crate) fn regex(r: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(r)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("not a regular expression: {e}"))
}

/// How a field's value is tested.
#[derive(Debug)]
enum ValueTest {
    Present,
    Equals(String),
    Matches(regex::Regex),
}

impl ValueTest {
    fn new(f: &FieldMatch) -> Result<Self, String> {
        Ok(match (&f.value, &f.regex) {
            (Some(v), _) => ValueTest::Equals(v.clone()),
            (None, Some(r)) => ValueTest::Matches(regex(r)?),
            (None, None) => ValueTest::Present,
        })
    }

    fn holds(&self, v: &str) -> bool {
        match self {
            ValueTest::Present => true,
            ValueTest::Equals(want) => v == want,
            ValueTest::Matches(r) => r.is_match(v),
        }
    }
}

/// A header, cookie or query parameter condition.
#[derive(Debug)]
struct Field<N> {
    name: N,
    test: ValueTest,
    absent: bool,
}

impl<N> Field<N> {
    /// Whether the condition holds given the field's values.
    fn holds<'v>(&self, mut values: impl Iterator<Item = &'v str>) -> bool {
        values.any(|v| self.test.holds(v)) != self.absent
    }
}

/// The compiled conditions of one rule.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    prefix: Option<String>,
    glob: Option<regex::bytes::Regex>,
    /// Public to the actions: its captures fill redirect targets.
    pub regex: Option<regex::Regex>,
    methods: Vec<Method>,
    hosts: Vec<String>,
    header: Option<Field<HeaderName>>,
    cookie: Option<Field<String>>,
    query_param: Option<Field<String>>,
    client: Vec<ipnet::IpNet>,
    client_not: Vec<ipnet::IpNet>,
    country: Vec<[u8; 2]>,
}

impl Conditions {
    /// Compiles the conditions of `c` (which passed `problems()`).
    pub(crate) fn new(c: &RuleConfig) -> Result<Self, String> {
        let field = |f: &Option<FieldMatch>| -> Result<Option<Field<String>>, String> {
            f.as_ref()
                .map(|f| {
                    Ok(Field {
                        name: f.name.clone(),
                        test: ValueTest::new(f)?,
                        absent: f.absent,
                    })
                })
                .transpose()
        };
        let nets = |v: &[String]| {
            v.iter()
                .map(|n| crate::net::parse_network(n))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Conditions {
            prefix: c.path.clone(),
            glob: c.path_glob.as_deref().map(glob).transpose()?,
            regex: c.path_regex.as_deref().map(regex).transpose()?,
            methods: c
                .methods
                .iter()
                .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?,
            hosts: c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            header: match &c.header {
                Some(f) => Some(Field {
                    name: HeaderName::from_bytes(f.name.as_bytes()).map_err(|e| e.to_string())?,
                    test: ValueTest::new(f)?,
                    absent: f.absent,
                }),
                None => None,
            },
            cookie: field(&c.cookie)?,
            query_param: field(&c.query_param)?,
            client: nets(&c.client)?,
            client_not: nets(&c.client_not)?,
            country: c
                .country
                .iter()
                .filter_map(|cc| {
                    let b = cc.to_ascii_uppercase().into_bytes();
                    Some([*b.first()?, *b.get(1)?])
                })
                .collect(),
        })
    }

    /// Whether a country condition needs the database.
    pub(crate) fn wants_country(&self) -> bool {
        !self.country.is_empty()
    }

    /// Whether every condition holds for `s`; the cheap ones are tried first.
    pub(crate) fn holds(&self, s: &Subject<'_>) -> bool {
        if let Some(p) = &self.prefix {
            if !s.path.starts_with(p.as_str()) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(s.method) {
            return false;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| host_matches(h, s.host)) {
            return false;
        }
        if !self.client.is_empty() && !self.client.iter().any(|n| n.contains(&s.client)) {
            return false;
        }
        if self.client_not.iter().any(|n| n.contains(&s.client)) {
            return false;
        }
        if let Some(g) = &self.glob {
            if !g.is_match(s.path.as_bytes()) {
                return false;
            }
        }
        if let Some(r) = &self.regex {
            if !r.is_match(s.path) {
                return false;
            }
        }
        if let Some(f) = &self.header {
            let values = s.headers.get_all(&f.name).iter();
            if !f.holds(values.filter_map(|v| v.to_str().ok())) {
                return false;
            }
        }
        if let Some(f) = &self.cookie {
            if !f.holds(cookies(s.headers, &f.name)) {
                return false;
            }
        }
        if let Some(f) = &self.query_param {
            if !f.holds(query_values(s.query, &f.name)) {
                return false;
            }
        }
        if !self.country.is_empty() {
            let Some(cc) = s.geo.and_then(|g| g.country(s.client)) else {
                return false;
            };
            if !self.country.contains(&cc) {
                return false;
            }
        }
        true
    }
}

/// Whether `pattern` (`*.example.com` matches one label) names `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|l| l.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => pattern == host,
    }
}

/// The values of cookie `name` in the request's `Cookie` fields (RFC 6265 5.4: `a=1; b=2`).
pub(crate) fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The values of parameter `name` in `query` (as sent: no percent-decoding, so `a%20b`
/// matches the value `a%20b`).
fn query_values<'a>(query: Option<&'a str>, name: &'a str) -> impl Iterator<Item = &'a str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(move |p| match p.split_once('=') {
            Some((n, v)) => (n == name).then_some(v),
            None => (p == name && !p.is_empty()).then_some(""),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> Subject<'a> {
        Subject {
            method: &Method::GET,
            host: "www.example.com",
            path,
            query,
            headers,
            client: "10.1.2.3".parse().unwrap(),
            geo: None,
        }
    }

    fn rule(toml: &str) -> Conditions {
        let c: RuleConfig = toml::from_str(toml).unwrap();
        assert_eq!(c.problems(), vec![], "{toml}");
        Conditions::new(&c).unwrap()
    }

    #[test]
    fn each_condition() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; session=xyz; b=2".parse().unwrap());
        h.insert("x-beta", "on".parse().unwrap());
        let cases: &[(&str, &str, Option<&str>, bool)] = &[
            ("", "/anything", None, true),
            ("path = \"/admin/\"", "/admin/x", None, true),
            ("path = \"/admin/\"", "/administrator", None, false),
            ("path_glob = \"*.html\"", "/index.html", None, false),
            ("path_glob = \"/*.html\"", "/index.html", None, true),
            ("path_glob = \"/**/*.html\"", "/a/b/c.html", None, true),
            ("path_glob = \"/*.html\"", "/a/b.html", None, false),
            ("path_regex = \"^/u/(\\\\d+)$\"", "/u/42", None, true),
            ("path_regex = \"^/u/(\\\\d+)$\"", "/u/x", None, false),
            ("methods = [\"POST\"]", "/", None, false),
            ("methods = [\"get\", \"HEAD\"]", "/", None, true),
            ("hosts = [\"*.example.com\"]", "/", None, true),
            ("hosts = [\"example.com\"]", "/", None, false),
            ("header = { name = \"X-Beta\" }", "/", None, true),
            (
                "header = { name = \"x-beta\", value = \"off\" }",
                "/",
                None,
                false,
            ),
            (
                "header = { name = \"x-gone\", absent = true }",
                "/",
                None,
                true,
            ),
            ("cookie = { name = \"session\" }", "/", None, true),
            (
                "cookie = { name = \"session\", regex = \"^x\" }",
                "/",
                None,
                true,
            ),
            ("cookie = { name = \"sess\" }", "/", None, false),
            (
                "cookie = { name = \"session\", absent = true }",
                "/",
                None,
                false,
            ),
            ("query_param = { name = \"p\" }", "/", Some("a=1&p"), true),
            (
                "query_param = { name = \"p\", value = \"2\" }",
                "/",
                Some("p=1&p=2"),
                true,
            ),
            ("query_param = { name = \"p\" }", "/", Some("pp=1"), false),
            ("client = [\"10.0.0.0/8\"]", "/", None, true),
            (
                "client = [\"192.168.0.0/16\", \"10.1.2.3\"]",
                "/",
                None,
                true,
            ),
            ("client_not = [\"10.0.0.0/8\"]", "/", None, false),
            ("client = [\"192.168.0.0/16\"]", "/", None, false),
            // Without a database, no country condition holds.
            ("country = [\"DE\"]", "/", None, false),
        ];
        for (toml, path, query, want) in cases {
            let c = rule(toml);
            assert_eq!(
                c.holds(&subject(path, *query, &h)),
                *want,
                "{toml} on {path}"
            );
        }
    }

    #[test]
    fn bad_conditions_are_problems() {
        for (toml, key) in [
            ("path_regex = \"(\"", "path_regex"),
            ("path_glob = \"[\"", "path_glob"),
            ("path = \"admin\"", "path"),
            ("client = [\"10.0.0.0/33\"]", "client[0]"),
            ("country = [\"Germany\"]", "country[0]"),
            ("methods = [\"GE T\"]", "methods[0]"),
            ("header = { name = \"bad name\" }", "header.name"),
            ("cookie = { name = \"a\", regex = \"[\" }", "cookie.regex"),
        ] {
            let c: RuleConfig = toml::from_str(toml).unwrap();
            let p = c.problems();
            assert!(p.iter().any(|(k, _)| k == key), "{toml}: {p:?}");
        }
    }
}
