//! A Compose project's alertmanager.yml as a drill may run it: Teams
//! receivers (`msteams_configs`, `msteamsv2_configs`) post to the Teams
//! mock, and nothing else leaves the stack. A drill must never page a
//! person, so every other integration (Slack, email, PagerDuty, webhooks,
//! …) is dropped, and secrets the drill does not need (`global`'s
//! passwords and API URLs, a Teams config's `http_config`) are not
//! copied. When any of that is needed, `init` writes a copy; else the
//! user's file is used unchanged.

use crate::lint::secrets::is_secret_key;
use serde_yaml_ng::Value;

/// Where a Teams URL goes when `init` rewrites a literal `webhook_url`.
pub const TEAMS_URL_FILE: &str = "/etc/alertmanager/secrets/teams-webhook-url";

/// The Teams integrations: each posts to the mock in a drill.
const TEAMS: [&str; 2] = ["msteams_configs", "msteamsv2_configs"];

/// What the drill's copy changes, and what it keeps.
#[derive(Debug, Default)]
pub struct ForDrill {
    /// `webhook_url_file` paths the Teams integrations read (the mock's
    /// URL goes there).
    pub files: Vec<String>,
    /// Teams integrations whose URL was written in clear, now read from
    /// [`TEAMS_URL_FILE`].
    pub literal: usize,
    /// `receiver: integration` dropped (they would notify people).
    pub dropped: Vec<String>,
    /// Secret keys of `global` and of Teams configs left out of the copy.
    pub withheld: Vec<String>,
}

impl ForDrill {
    /// Whether the user's file cannot be used as it is.
    pub fn needs_copy(&self) -> bool {
        self.literal > 0 || !self.dropped.is_empty() || !self.withheld.is_empty()
    }
}

/// Rewrites `doc` (alertmanager.yml) for a drill; what changed.
pub fn for_drill(doc: &mut Value) -> ForDrill {
    let mut out = ForDrill::default();
    if let Some(global) = doc.get_mut("global").and_then(Value::as_mapping_mut) {
        let keys: Vec<String> = global
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| is_secret_key(k) || k.ends_with("_url") || k.ends_with("_key"))
            .map(str::to_string)
            .collect();
        for k in keys {
            global.remove(k.as_str());
            out.withheld.push(format!("global.{k}"));
        }
    }
    let Some(receivers) = doc.get_mut("receivers").and_then(Value::as_sequence_mut) else {
        return out;
    };
    for r in receivers.iter_mut().filter_map(Value::as_mapping_mut) {
        let name = r
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let integrations: Vec<String> = r
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| k.ends_with("_configs") && !TEAMS.contains(k))
            .map(str::to_string)
            .collect();
        for k in integrations {
            r.remove(k.as_str());
            out.dropped.push(format!("{name}: {k}"));
        }
        for key in TEAMS {
            let Some(cfgs) = r.get_mut(key).and_then(Value::as_sequence_mut) else {
                continue;
            };
            for c in cfgs.iter_mut().filter_map(Value::as_mapping_mut) {
                // The mock needs no credentials, proxy or TLS settings.
                if c.remove("http_config").is_some() {
                    out.withheld.push(format!("{name}: {key}.http_config"));
                }
                if let Some(f) = c.get("webhook_url_file").and_then(Value::as_str) {
                    out.files.push(f.to_string());
                } else if c.remove("webhook_url").is_some() {
                    c.insert("webhook_url_file".into(), TEAMS_URL_FILE.into());
                    out.literal += 1;
                }
            }
        }
    }
    out.files.sort();
    out.files.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "global:
  smtp_auth_password: hunter2
  slack_api_url: https://hooks.example.invalid/T0/B0/xyz
  resolve_timeout: 5m
receivers:
- name: t
  msteams_configs:
  - webhook_url: https://example.invalid/hook/abc
  msteamsv2_configs:
  - webhook_url_file: /run/secrets/flows
    http_config: {basic_auth: {username: u, password: p4ss}}
- name: oncall
  slack_configs: [{channel: '#ops'}]
  email_configs: [{to: ops@example.invalid}]
  webhook_configs: [{url: 'http://x'}]
";

    #[test]
    fn a_drill_pages_no_one_and_copies_no_secret() {
        let mut doc: Value = serde_yaml_ng::from_str(CONFIG).unwrap();
        let d = for_drill(&mut doc);
        assert_eq!(d.literal, 1);
        assert_eq!(d.files, ["/run/secrets/flows"]);
        assert_eq!(
            d.dropped,
            [
                "oncall: slack_configs",
                "oncall: email_configs",
                "oncall: webhook_configs"
            ]
        );
        assert_eq!(d.withheld.len(), 3, "{:?}", d.withheld);
        assert!(d.needs_copy());
        let text = serde_yaml_ng::to_string(&doc).unwrap();
        for secret in ["hunter2", "hooks.example", "hook/abc", "p4ss", "ops@"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("resolve_timeout") && text.contains(TEAMS_URL_FILE),
            "{text}"
        );
    }

    #[test]
    fn a_config_that_only_reads_teams_from_a_file_is_kept() {
        let mut doc: Value = serde_yaml_ng::from_str(
            "receivers:\n- name: t\n  msteams_configs:\n  - webhook_url_file: /etc/am/url\n",
        )
        .unwrap();
        let d = for_drill(&mut doc);
        assert!(!d.needs_copy(), "{d:?}");
        assert_eq!(d.files, ["/etc/am/url"]);
    }
}
