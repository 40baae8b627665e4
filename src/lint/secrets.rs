//! Secrets in clear text: webhook URLs, passwords and tokens written in the
//! stack's files instead of being read from a file or the environment, and
//! Grafana's default admin credentials.

use super::{Finding, Severity};
use crate::error::Pos;
use crate::spec::source::Source;
use crate::spec::stack::Stack;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

/// Keys whose value is a secret when written inline.
const SECRET_KEYS: &[&str] = &[
    "password",
    "bearer_token",
    "credentials",
    "api_key",
    "auth_token",
    "api_secret",
    "routing_key",
    "service_key",
    "bot_token",
];
/// URL keys that carry the secret in the URL itself (Teams, Slack, Discord webhooks).
const URL_KEYS: &[&str] = &["webhook_url", "api_url", "slack_api_url", "url"];
/// Hosts of webhook URLs that are secrets wherever they appear.
const WEBHOOK_HOSTS: &[&str] = &[
    "webhook.office.com",
    "outlook.office.com/webhook",
    "logic.azure.com",
    "hooks.slack.com",
    "discord.com/api/webhooks",
    "powerautomate",
];

/// Whether a key's value is a secret when written inline.
pub fn is_secret_key(k: &str) -> bool {
    SECRET_KEYS.contains(&k) || k.ends_with("_password") || k.ends_with("_secret")
}

/// Whether an environment variable holds a secret by its name
/// (`DB_PASSWORD`, `API_TOKEN`, `OPENAI_API_KEY`, `SECRET_KEY_BASE`), or by
/// its value: a webhook URL, a URL with a password in it (a DSN).
pub fn is_secret_var(name: &str, value: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    let words: Vec<&str> = name.split(['_', '-', '.']).collect();
    // `PWD` alone is the shell's working folder; a name ending in `KEY`
    // (`OPENAI_KEY`, `ENCRYPTION_KEY`) is a key, one with `KEY` inside
    // (`CACHE_KEY_PREFIX`) is not.
    let by_name = name != "pwd"
        && words.iter().enumerate().any(|(i, w)| {
            matches!(*w, "pwd" | "pass" | "apikey" | "credentials")
                || ["password", "passwd", "secret", "token"]
                    .iter()
                    .any(|s| w.ends_with(s))
                || (*w == "key" && i > 0 && i == words.len() - 1)
                || (*w == "key"
                    && i > 0
                    && ["api", "access", "private", "secret", "signing"].contains(&words[i - 1]))
        });
    // A password in a URL's authority (`scheme://user:password@host`).
    let by_value = value.is_some_and(|v| {
        WEBHOOK_HOSTS.iter().any(|h| v.contains(h))
            || v.split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(rest))
                .and_then(|authority| authority.rsplit_once('@'))
                .is_some_and(|(user, _)| user.contains(':'))
    });
    by_name || by_value
}

fn walk(v: &Value, path: &str, in_receiver: bool, src: &Source, out: &mut Vec<Finding>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                let Some(k) = k.as_str() else { continue };
                let p = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                };
                let receiver = in_receiver || k.ends_with("_configs") || k == "receivers";
                if let Value::String(s) = val {
                    let inline_url = URL_KEYS.contains(&k) && receiver && s.starts_with("http");
                    let secret_key = is_secret_key(k);
                    let inline_secret = secret_key && !s.is_empty() && !s.starts_with("$__");
                    if inline_url || inline_secret {
                        let fix = if inline_url {
                            format!("{k}_file")
                        } else {
                            format!("{k}_file or an environment variable")
                        };
                        // The value itself is never printed.
                        out.push(
                            Finding::at(
                                "secret",
                                Severity::Error,
                                src,
                                &p,
                                format!("`{k}` holds a secret in clear text"),
                            )
                            .help(format!(
                                "use {fix}, and let stack.yaml's `secrets:` write that file"
                            )),
                        );
                    }
                }
                walk(val, &p, receiver, src, out);
            }
        }
        Value::Sequence(s) => {
            for (i, x) in s.iter().enumerate() {
                walk(x, &format!("{path}.{i}"), in_receiver, src, out);
            }
        }
        _ => {}
    }
}

/// Inline secrets in one YAML config.
pub fn lint_yaml(src: &Source) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Ok(v) = serde_yaml_ng::from_str::<Value>(&src.text) {
        walk(&v, "", false, src, &mut out);
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Line-level scan of any file: webhook URLs and Grafana admin passwords.
pub fn lint_text(path: &Path, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let pos = |col: usize| Pos {
            line: i + 1,
            col: col + 1,
        };
        if let Some(c) = WEBHOOK_HOSTS.iter().filter_map(|h| line.find(h)).min() {
            let start = line[..c].rfind("http").unwrap_or(c);
            out.push(
                Finding::pos(
                    "secret",
                    Severity::Error,
                    path,
                    pos(start),
                    "a webhook URL is written in clear text (the URL is the credential)",
                )
                .help("read it from a file (webhook_url_file) or the environment"),
            );
        }
        let l = line.trim();
        for key in ["GF_SECURITY_ADMIN_PASSWORD", "admin_password"] {
            if let Some(rest) = l.strip_prefix(key) {
                let value = rest
                    .trim_start_matches([' ', '=', ':'])
                    .trim()
                    .trim_matches(['"', '\'']);
                let indirect = value.is_empty()
                    || value.starts_with('$')
                    || value.starts_with("__file")
                    || value.starts_with("__env");
                if value == "admin" {
                    out.push(Finding::pos(
                        "secret",
                        Severity::Error,
                        path,
                        pos(line.find(key).unwrap_or(0)),
                        "Grafana runs with the default admin/admin credentials",
                    ));
                } else if !indirect {
                    out.push(
                        Finding::pos(
                            "secret",
                            Severity::Error,
                            path,
                            pos(line.find(key).unwrap_or(0)),
                            "the Grafana admin password is written in clear text",
                        )
                        .help("use GF_SECURITY_ADMIN_PASSWORD__FILE or an environment variable"),
                    );
                }
            }
        }
    }
    out
}

/// Every config file of the stack, YAML-aware where it can be.
pub fn lint_stack(stack: &Stack) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut yaml: Vec<&Source> = vec![&stack.source, &stack.prometheus.source];
    if let Some(am) = &stack.alertmanager {
        yaml.push(&am.source);
    }
    for src in &yaml {
        out.extend(lint_yaml(src));
    }
    let mut files = Vec::new();
    files_under(stack.dir(), &mut files);
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            for finding in lint_text(&f, &text) {
                // The YAML pass already reported this line.
                if !out
                    .iter()
                    .any(|o| o.file == finding.file && o.line == finding.line)
                {
                    out.push(finding);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_webhook_and_password() {
        let src = Source::from_text(
            Path::new("am.yml"),
            "receivers:\n  - name: t\n    msteams_configs:\n      - webhook_url: https://x.webhook.office.com/webhookb2/abc\n    email_configs:\n      - auth_password: x\n        to: a@b\n".into(),
        );
        let f = lint_yaml(&src);
        assert_eq!(
            f.iter().map(|f| (f.line, f.col)).collect::<Vec<_>>(),
            [(4, 22), (6, 24)],
            "{f:?}"
        );
        assert!(!f[0].message.contains("office.com"));
        let f = lint_text(Path::new(".env"), "GF_SECURITY_ADMIN_PASSWORD=admin\nX=1\nGF_SECURITY_ADMIN_PASSWORD=s3cret\nGF_SECURITY_ADMIN_PASSWORD=${PW}\n");
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn an_environment_variable_is_a_secret_by_its_name_or_value() {
        for n in [
            "DB_PASSWORD",
            "API_TOKEN",
            "OPENAI_API_KEY",
            "SECRET_KEY_BASE",
            "PGPASSWORD",
            "aws_secret_access_key",
        ] {
            assert!(is_secret_var(n, Some("x")), "{n}");
        }
        for n in [
            "LOG_LEVEL",
            "CACHE_KEY_PREFIX",
            "PASSENGER_COUNT",
            "TOKENIZER",
        ] {
            assert!(!is_secret_var(n, Some("x")), "{n}");
        }
        assert!(is_secret_var(
            "DATABASE_URL",
            Some("postgres://app:pw@db:5432/app")
        ));
        assert!(!is_secret_var(
            "DATABASE_URL",
            Some("postgres://app@db:5432/app")
        ));
        assert!(is_secret_var(
            "HOOK",
            Some("https://x.webhook.office.com/webhookb2/abc")
        ));
    }
}
