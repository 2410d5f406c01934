//! The node config parse: every problem with its line, full key path and value.
use super::*;

const SRC: &str = r#"[admin]
listen = "127.0.0.1:0"
token = "t"

[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]

[[edge.sites]]
hosts = ["b.test"]
origins = ["http://127.0.0.1:1", "ftp://nope"]
"#;

#[test]
fn origin_tls_keys_are_checked_with_their_lines() {
    let src = r#"[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]
origin_ca = "/nonexistent/ca.pem"

[[edge.sites]]
hosts = ["b.test"]
origins = ["https://127.0.0.1:1"]
origin_sni = "not a name"
origin_host = "bad host/"

[[edge.sites]]
hosts = ["c.test"]
origins = ["https://127.0.0.1:1"]
origin_ca = "/etc/hostname"
origin_insecure_skip_verify = true
"#;
    let errs = NodeConfig::parse("n.toml", src).unwrap_err();
    let has = |line: usize, key: &str, words: &str| {
        errs.iter().any(|e| {
            e.starts_with(&format!("n.toml:{line}: edge.sites["))
                && e.contains(key)
                && e.contains(words)
        })
    };
    assert!(
        has(7, "origin_ca", "cannot read /nonexistent/ca.pem"),
        "{errs:?}"
    );
    assert!(has(7, "origin_ca", "has none"), "{errs:?}");
    assert!(has(12, "origin_sni", "not a server name"), "{errs:?}");
    assert!(has(13, "origin_host", "not a host"), "{errs:?}");
    assert!(
        has(19, "origin_insecure_skip_verify", "contradicts origin_ca"),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 5, "{errs:?}");
}

#[test]
fn tier_tls_keys_are_checked_with_their_lines() {
    let src = r#"[edge]
listen = ["127.0.0.1:0"]
client_ca = "/etc/hostname"
purge_hub_ca = "/etc/hostname"
shields = ["http://127.0.0.1:2"]
shield_secret = "s3cret-s3cret"
shield_ca = "/nonexistent/fleet.pem"
shield_client_cert = "/etc/hostname"

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]

[admin]
listen = "127.0.0.1:0"
token = "t"
cert = "/etc/hostname"
"#;
    let errs = NodeConfig::parse("n.toml", src).unwrap_err();
    let has = |line: usize, words: &str| {
        errs.iter()
            .any(|e| e.starts_with(&format!("n.toml:{line}: edge.")) && e.contains(words))
    };
    assert!(has(3, "there is none"), "{errs:?}");
    assert!(has(4, "an https:// purge_hub"), "{errs:?}");
    assert!(has(7, "cannot read /nonexistent/fleet.pem"), "{errs:?}");
    assert!(has(7, "applies to https:// shields"), "{errs:?}");
    assert!(has(8, "go together"), "{errs:?}");
    assert!(has(8, "applies to https:// shields"), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("n.toml:17: admin.cert") && e.contains("go together")),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 7, "{errs:?}");
}

#[test]
fn acme_keys_are_checked_with_their_lines() {
    let src = r#"[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["a.test"]
origins = ["http://127.0.0.1:1"]
acme = true
"#;
    let errs = NodeConfig::parse("n.toml", src).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("n.toml:7: edge.sites[0].acme: needs an [acme]")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("edge.state_dir")),
        "{errs:?}"
    );
    let with = format!(
        "{src}\n[acme]\ndirectory = \"http://ca.test/dir\"\ncontact = [\"ops@x.test\"]\n\
             eab_kid = \"k\"\nretry_after = \"0s\"\nchallenge = \"dns-99\"\n"
    );
    let errs = NodeConfig::parse("n.toml", &with).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with(
            "n.toml:14: acme.challenge: \"dns-99\" is not one of \"http-01\", \"tls-alpn-01\", \"dns-01\""
        )),
        "{errs:?}"
    );
    // Type errors in [acme] and semantic problems in [edge] come in one run.
    assert!(
        errs.iter().any(|e| e.contains("edge.state_dir")),
        "{errs:?}"
    );
    let with = with.replace("challenge = \"dns-99\"\n", "");
    let errs = NodeConfig::parse("n.toml", &with).unwrap_err();
    for (line, key) in [
        (10, "acme.directory"),
        (11, "acme.contact[0]"),
        (12, "acme.eab_kid"),
        (13, "acme.retry_after"),
    ] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("n.toml:{line}: {key}:"))),
            "{key}: {errs:?}"
        );
    }
}

#[test]
fn an_eab_key_that_is_not_base64url_is_refused() {
    let src = "[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"a.test\"]\n\
                   origins = [\"http://127.0.0.1:1\"]\n\n[acme]\neab_kid = \"k\"\n\
                   eab_hmac_key = \"not base64!\"\n";
    let errs = NodeConfig::parse("n.toml", src).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("n.toml:10: acme.eab_hmac_key: must be the base64url")),
        "{errs:?}"
    );
}

#[test]
fn locates_nested_keys() {
    let lines = locate::Lines::new(SRC);
    let locate = |_: &str, p: &str| lines.line(p);
    assert_eq!(locate(SRC, "admin.token"), Some(3));
    assert_eq!(locate(SRC, "edge.listen"), Some(6));
    assert_eq!(locate(SRC, "edge.sites[1].origins[1]"), Some(14));
    assert_eq!(locate(SRC, "edge.sites[1].missing"), Some(12));
}

#[test]
fn reports_every_problem_with_line_and_key() {
    let errs = NodeConfig::parse("n.toml", SRC).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("n.toml:14: edge.sites[1].origins[1]: "),
        "{errs:?}"
    );
    let bad = SRC
        .replace("token = \"t\"", "token = \"\"")
        .replace("a.test", "b.test");
    let errs = NodeConfig::parse("n.toml", &bad).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:?}");
    let typo = SRC.replace("listen = [", "lisen = [");
    let errs = NodeConfig::parse("n.toml", &typo).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("n.toml:6: edge.lisen: unknown key; did you mean \"listen\"?")),
        "{errs:?}"
    );
    let syntax = "[edge\nlisten=1";
    assert!(NodeConfig::parse("n.toml", syntax).unwrap_err()[0].starts_with("n.toml:1:"));
    let dns = format!("{SRC}\n[dns]\nlisten = [\"127.0.0.1:0\"]\nenabled = true\n");
    let errs = NodeConfig::parse("n.toml", &dns).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("n.toml:18: dns.enabled: unknown key")),
        "{errs:?}"
    );
    let agent = format!("{SRC}\n[agent]\nlogs = [{{ path = \"/var/log/x.log\" }}]\n");
    let errs = NodeConfig::parse("n.toml", &agent.replace("\"ftp://nope\"", "")).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("agent: the agent forwards over OTLP")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains("agent.buffer_dir")),
        "{errs:?}"
    );
    let shield = format!("{SRC}\n[shield]\nlisten = [\"127.0.0.1:0\"]\nsecret = \"x\"\n");
    let errs = NodeConfig::parse("n.toml", &shield).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("shield.secret: use at least 8")),
        "{errs:?}"
    );
    assert!(errs.iter().any(|e| e.contains("shield.sites")), "{errs:?}");
    let tel = format!(
        "{SRC}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4317\"\nsampling_ratio = 2.0\n"
    );
    let errs = NodeConfig::parse("n.toml", &tel.replace("\"ftp://nope\"", "")).unwrap_err();
    assert_eq!(
        errs,
        ["n.toml:18: telemetry.sampling_ratio: must be between 0.0 and 1.0 (got 2.0)"],
        "{errs:?}"
    );
    let size = SRC.replace("[edge]\n", "[edge]\nmemory_bytes = \"lots\"\n");
    let errs = NodeConfig::parse("n.toml", &size).unwrap_err();
    assert_eq!(
        errs[0],
        "n.toml:6: edge.memory_bytes: \"lots\" is not a size (use bytes or a string like \"512MiB\")",
        "{errs:?}"
    );
    // The other sections' problems come in the same run.
    assert!(
        errs[1].starts_with("n.toml:15: edge.sites[1].origins[1]"),
        "{errs:?}"
    );
}

/// Only the lines of `errs`, without the file name.
fn problems(src: &str) -> Vec<String> {
    NodeConfig::parse("n.toml", src)
        .unwrap_err()
        .into_iter()
        .map(|e| e.trim_start_matches("n.toml:").to_string())
        .collect()
}

#[test]
fn a_broken_section_hides_nothing_in_another() {
    let src = format!("{SRC}\n[dns]\nlisten = \"127.0.0.1:53\"\nudp_payload = \"big\"\n");
    let errs = problems(&src);
    assert_eq!(
        errs,
        [
            "14: edge.sites[1].origins[1]: \"ftp://nope\": only http:// and https:// are supported",
            "16: dns.zones: no zones: add a [[dns.zones]] section",
            "17: dns.listen: \"127.0.0.1:53\" is not an array",
            "18: dns.udp_payload: \"big\" is not a whole number from 0 to 65535",
        ]
        .map(String::from)[..],
        "{errs:?}"
    );
}

#[test]
fn stand_ins_cause_no_problem_of_their_own() {
    // A required key of the wrong type: one problem, not also "missing" or "at least one".
    let src = SRC.replace(
        "origins = [\"http://127.0.0.1:1\"]\n",
        "origins = \"http://127.0.0.1:1\"\n",
    );
    let errs = problems(&src.replace(", \"ftp://nope\"", ""));
    assert_eq!(
        errs,
        ["10: edge.sites[0].origins: \"http://127.0.0.1:1\" is not an array"],
        "{errs:?}"
    );
    // Bad array elements keep their indices; the good ones between are not blamed.
    let src = SRC.replace(
        "listen = [\"127.0.0.1:0\"]",
        "listen = [\"nope\", \"127.0.0.1:0\", \"10.0.0.1:70000\", \"127.0.0.1:0\"]",
    );
    let errs = problems(&src.replace(", \"ftp://nope\"", ""));
    assert_eq!(
        errs,
        [
            "6: edge.listen[0]: \"nope\" is not a socket address (IP:port)",
            "6: edge.listen[2]: \"10.0.0.1:70000\" is not a socket address (IP:port)",
        ]
        .map(String::from)[..],
        "{errs:?}"
    );
}

#[test]
fn every_unknown_key_and_section_is_named() {
    let src = SRC
        .replace("token = \"t\"", "token = \"t\"\ntoken_fil = \"/x\"")
        .replace(
            "hosts = [\"b.test\"]",
            "hosts = [\"b.test\"]\nqeury = \"sort\"",
        )
        .replace(", \"ftp://nope\"", "")
        + "\n[edg]\nlisten = 1\n[acme]\nfoo = 1\n";
    let errs = problems(&src);
    assert_eq!(
        errs,
        [
            "4: admin.token_fil: unknown key; did you mean \"token_file\"?",
            "15: edge.sites[1].qeury: unknown key; did you mean \"query\"?",
            "18: edg: unknown section; did you mean \"edge\"?",
            "21: acme.foo: unknown key",
        ]
        .map(String::from)[..],
        "{errs:?}"
    );
}

#[test]
fn secrets_are_never_repeated_and_problems_are_bounded() {
    let src = format!("{SRC}\n[shield]\nsecret = 12345678\nlisten = [\"127.0.0.1:0\"]\n");
    let errs = problems(&src.replace(", \"ftp://nope\"", ""));
    assert!(
        errs.iter()
            .any(|e| e == "17: shield.secret: an integer is not a string"),
        "{errs:?}"
    );
    assert!(!errs.iter().any(|e| e.contains("12345678")), "{errs:?}");
    let many = vec!["\"x\""; 500].join(", ");
    let src = SRC.replace("listen = [\"127.0.0.1:0\"]", &format!("listen = [{many}]"));
    let errs = problems(&src);
    assert_eq!(
        errs.iter().filter(|e| e.contains("edge.listen[")).count(),
        problems::MOST,
        "{}",
        errs.len()
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("5: edge: stopped after 64 problems")),
        "{errs:?}"
    );
}
