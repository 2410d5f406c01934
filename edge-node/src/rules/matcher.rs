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

/// One condition, compiled.
#[derive(Debug)]
enum Check {
    Prefix(String),
    Methods(Vec<Method>),
    Hosts(Vec<String>),
    Client(Vec<ipnet::IpNet>),
    ClientNot(Vec<ipnet::IpNet>),
    /// A glob or regex on the path, after the literal start and end every match has.
    Pattern(Literals, regex::bytes::Regex),
    Header(Field<HeaderName>),
    Cookie(Field<String>),
    Query(Field<String>),
    Country(Vec<[u8; 2]>),
}

/// What every path a pattern matches starts and ends with: checked first, so a rule whose
/// pattern cannot match is passed over without running the regex (most rules, on most
/// requests).
#[derive(Debug, Default)]
struct Literals {
    prefix: String,
    suffix: String,
}

impl Literals {
    /// For a glob: the text before its first wildcard, and after its last one when that
    /// holds no other special character.
    fn of_glob(g: &str) -> Self {
        let special = |c: char| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
        let prefix: String = g.chars().take_while(|c| !special(*c)).collect();
        let suffix = match g.rfind(special) {
            Some(i) => g[i + 1..].to_string(),
            None => String::new(),
        };
        Literals { prefix, suffix }
    }

    /// For a regex anchored with `^`: the literal text right after it (a character with a
    /// quantifier after it is left out); nothing for an alternation anywhere.
    fn of_regex(r: &str) -> Self {
        let Some(rest) = r.strip_prefix('^') else {
            return Literals::default();
        };
        if r.contains('|') {
            return Literals::default();
        }
        let mut prefix = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            let lit = match c {
                '\\' => match chars.next() {
                    Some(e) if e.is_ascii_punctuation() => e,
                    _ => break,
                },
                c if c.is_alphanumeric() || "/-_~%=,:@!&'\";<>`#".contains(c) => c,
                _ => break,
            };
            if matches!(chars.peek(), Some('?' | '*' | '{' | '+')) {
                break;
            }
            prefix.push(lit);
        }
        Literals {
            prefix,
            suffix: String::new(),
        }
    }

    fn admit(&self, path: &str) -> bool {
        path.starts_with(self.prefix.as_str()) && path.ends_with(self.suffix.as_str())
    }
}

/// The compiled conditions of one rule: only those it has, cheap ones first.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    checks: Vec<Check>,
    /// Its `path_regex`, whose captures fill redirect targets.
    pub regex: Option<regex::Regex>,
}

impl Conditions {
    /// Compiles the conditions of `c` (which passed `problems()`).
    pub(crate) fn new(c: &RuleConfig) -> Result<Self, String> {
        let field = |f: &FieldMatch| -> Result<Field<String>, String> {
            Ok(Field {
                name: f.name.clone(),
                test: ValueTest::new(f)?,
                absent: f.absent,
            })
        };
        let nets = |v: &[String]| {
            v.iter()
                .map(|n| crate::net::parse_network(n))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut checks = Vec::new();
        if let Some(p) = &c.path {
            checks.push(Check::Prefix(p.clone()));
        }
        if !c.methods.is_empty() {
            checks.push(Check::Methods(
                c.methods
                    .iter()
                    .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?,
            ));
        }
        if !c.hosts.is_empty() {
            checks.push(Check::Hosts(
                c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            ));
        }
        if !c.client.is_empty() {
            checks.push(Check::Client(nets(&c.client)?));
        }
        if !c.client_not.is_empty() {
            checks.push(Check::ClientNot(nets(&c.client_not)?));
        }
        if let Some(g) = &c.path_glob {
            checks.push(Check::Pattern(Literals::of_glob(g), glob(g)?));
        }
        let mut path_regex = None;
        if let Some(r) = &c.path_regex {
            let re = regex(r)?;
            let bytes = regex::bytes::Regex::new(re.as_str()).map_err(|e| e.to_string())?;
            checks.push(Check::Pattern(Literals::of_regex(r), bytes));
            path_regex = Some(re);
        }
        if let Some(f) = &c.header {
            checks.push(Check::Header(Field {
                name: HeaderName::from_bytes(f.name.as_bytes()).map_err(|e| e.to_string())?,
                test: ValueTest::new(f)?,
                absent: f.absent,
            }));
        }
        if let Some(f) = &c.cookie {
            checks.push(Check::Cookie(field(f)?));
        }
        if let Some(f) = &c.query_param {
            checks.push(Check::Query(field(f)?));
        }
        if !c.country.is_empty() {
            checks.push(Check::Country(
                c.country
                    .iter()
                    .filter_map(|cc| {
                        let b = cc.to_ascii_uppercase().into_bytes();
                        Some([*b.first()?, *b.get(1)?])
                    })
                    .collect(),
            ));
        }
        Ok(Conditions {
            checks,
            regex: path_regex,
        })
    }

    /// The longest literal text every path this rule matches starts with (its `path`, or
    /// the start of its glob or regex): what the rule set indexes rules by.
    pub(crate) fn path_prefix(&self) -> &str {
        let mut best = "";
        for c in &self.checks {
            let p = match c {
                Check::Prefix(p) => p.as_str(),
                Check::Pattern(lit, _) => lit.prefix.as_str(),
                _ => continue,
            };
            if p.len() > best.len() {
                best = p;
            }
        }
        best
    }

    /// Whether a country condition needs the database.
    pub(crate) fn wants_country(&self) -> bool {
        self.checks.iter().any(|c| matches!(c, Check::Country(_)))
    }

    /// Whether every condition holds for `s`.
    pub(crate) fn holds(&self, s: &Subject<'_>) -> bool {
        self.checks.iter().all(|c| c.holds(s))
    }
}

impl Check {
    fn holds(&self, s: &Subject<'_>) -> bool {
        match self {
            Check::Prefix(p) => s.path.starts_with(p.as_str()),
            Check::Methods(m) => m.contains(s.method),
            Check::Hosts(h) => h.iter().any(|h| host_matches(h, s.host)),
            Check::Client(n) => n.iter().any(|n| n.contains(&s.client)),
            Check::ClientNot(n) => !n.iter().any(|n| n.contains(&s.client)),
            Check::Pattern(lit, re) => lit.admit(s.path) && re.is_match(s.path.as_bytes()),
            Check::Header(f) => {
                let values = s.headers.get_all(&f.name).iter();
                f.holds(values.filter_map(|v| v.to_str().ok()))
            }
            Check::Cookie(f) => f.holds(cookies(s.headers, &f.name)),
            Check::Query(f) => f.holds(query_values(s.query, &f.name)),
            Check::Country(want) => s
                .geo
                .and_then(|g| g.country(s.client))
                .is_some_and(|cc| want.contains(&cc)),
        }
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
        .into_iter()
        .flat_map(|q| q.split('&'))
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
    fn literal_prefilters_never_refuse_a_match() {
        let g = Literals::of_glob("/static/**/*.css");
        assert_eq!((g.prefix.as_str(), g.suffix.as_str()), ("/static/", ".css"));
        let g = Literals::of_glob("/**/*.{png,jpg}");
        assert_eq!((g.prefix.as_str(), g.suffix.as_str()), ("/", ""));
        for (r, want) in [
            (r"^/old/([a-z]+)$", "/old/"),
            (r"^/a\.b/c", "/a.b/c"),
            (r"^/ab?c", "/a"),
            (r"^/ab*", "/a"),
            (r"^/x|^/y", ""),
            (r"/u/\d+", ""),
            (r"(?i)^/ADMIN", ""),
            (r"^/\d+", "/"),
        ] {
            assert_eq!(Literals::of_regex(r).prefix, want, "{r}");
        }
        // Whatever the prefilter, the regex's own verdict stands.
        let h = HeaderMap::new();
        for (toml, path, want) in [
            ("path_regex = \"^/ab?c\"", "/ac", true),
            ("path_regex = \"^/ab*c\"", "/abbbc", true),
            ("path_glob = \"/static/**/*.css\"", "/static/a/b.css", true),
            ("path_glob = \"/static/**/*.css\"", "/static/a/b.js", false),
        ] {
            assert_eq!(
                rule(toml).holds(&subject(path, None, &h)),
                want,
                "{toml} {path}"
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
