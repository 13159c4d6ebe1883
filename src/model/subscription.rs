//! Who hears about what: a subscription's destination, filters and digest mode, and the checks
//! on addresses and URLs that every way of declaring one (config, `trialwatch subscribe`) uses.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EventKind, FieldChange, FieldPattern, NctId, Severity, WatchedFields};

/// Where a subscription's alerts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// Alerts are emailed through the configured `[smtp]` server.
    Email {
        /// The mailbox that receives them, already checked by `validate_email`.
        address: String,
    },
    /// Alerts are `POST`ed as signed JSON.
    Webhook {
        /// The http(s) endpoint; its path and query may hold a token, so it stays out of logs.
        url: String,
        /// The file holding the signing secret, read at each delivery so a rotated secret
        /// applies at once; the secret itself is never stored.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_file: Option<PathBuf>,
    },
    /// Alerts are posted in a team-chat service's own incoming-webhook format, so they read
    /// as messages in the channel (no receiver code on the subscriber's side).
    Chat {
        /// Which service's format the URL expects.
        service: ChatService,
        /// The service's incoming-webhook URL (it carries the channel's token, so it stays
        /// out of logs).
        url: String,
    },
}

/// The team-chat services whose documented incoming-webhook formats trialwatch speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatService {
    /// Slack incoming webhooks: `{"text", "blocks"}`.
    Slack,
    /// Discord webhooks: `{"content", "embeds"}`.
    Discord,
    /// Microsoft Teams workflows: an Adaptive Card in a `message` attachment.
    Teams,
    /// ntfy topics: the message as the body, title/priority/tags as headers.
    Ntfy,
}

impl ChatService {
    /// Every service, for messages that list them.
    pub const ALL: &'static [ChatService] = &[
        ChatService::Slack,
        ChatService::Discord,
        ChatService::Teams,
        ChatService::Ntfy,
    ];

    /// The word the CLI, the config keys and listings use (`slack`, `discord`, `teams`, `ntfy`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChatService::Slack => "slack",
            ChatService::Discord => "discord",
            ChatService::Teams => "teams",
            ChatService::Ntfy => "ntfy",
        }
    }
}

impl Target {
    /// `email` or `webhook`: the word listings show and the subscription ID hashes.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Email { .. } => "email",
            Target::Webhook { .. } => "webhook",
            Target::Chat { service, .. } => service.as_str(),
        }
    }

    /// The address or URL, for listings meant for the operator (never for info-level logs).
    pub fn address(&self) -> &str {
        match self {
            Target::Email { address } => address,
            Target::Webhook { url, .. } | Target::Chat { url, .. } => url,
        }
    }
}

/// Whether alerts go out as they come or grouped once a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestMode {
    /// One alert per new version, sent as soon as the sync finds it.
    #[default]
    Immediate,
    /// One message a day gathering the day's alerts, for readers who want less mail.
    Daily,
    /// One message a week gathering the week's alerts, for readers who want even less.
    Weekly,
}

impl DigestMode {
    /// The time between two digests; `None` for immediate delivery.
    pub fn interval(self) -> Option<std::time::Duration> {
        match self {
            DigestMode::Immediate => None,
            DigestMode::Daily => Some(std::time::Duration::from_secs(24 * 3600)),
            DigestMode::Weekly => Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

impl FromStr for DigestMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "immediate" | "none" => Ok(DigestMode::Immediate),
            "daily" => Ok(DigestMode::Daily),
            "weekly" => Ok(DigestMode::Weekly),
            _ => Err(format!(
                "`{s}` is not a digest mode: use \"daily\" (one message a day), \"weekly\" (one a week) or \"immediate\" (the default)"
            )),
        }
    }
}

impl fmt::Display for DigestMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DigestMode::Immediate => "immediate",
            DigestMode::Daily => "daily",
            DigestMode::Weekly => "weekly",
        })
    }
}

/// Where a subscription was declared: it decides who may remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `[[subscription]]` in the configuration; removed by editing the file.
    Config,
    /// `trialwatch subscribe`; removed by `trialwatch unsubscribe`.
    Store,
}

/// One subscriber and what it wants to hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Derived from the content (destination and filters), so a config-declared subscription
    /// keeps its ID, and its pending alerts, across restarts; subscribing twice is a no-op.
    pub id: String,
    /// Where it was declared, so `unsubscribe` can refuse to drop a config-declared one.
    pub origin: Origin,
    /// Where its alerts go.
    pub target: Target,
    /// Only these trials; empty means every watched trial.
    #[serde(default)]
    pub nct: Vec<NctId>,
    /// Only changes at paths matching these; empty means the watched fields (`mirror.fields`).
    #[serde(default)]
    pub fields: Vec<FieldPattern>,
    /// Changes below this severity are not sent; a version with none left alerts nobody.
    pub min_severity: Severity,
    /// Whether alerts go out one by one or once a day.
    pub digest: DigestMode,
    /// When `trialwatch subscribe` added it (absent for config-declared ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    /// What it hears about; empty means field changes only (what every subscription heard
    /// before event kinds existed, so stored ones keep their meaning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventKind>,
    /// Only entries and exits of these watched queries; empty means every query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<String>,
}

impl Subscription {
    /// A subscription with its content-derived ID (`cfg-…` or `sub-…`); the trial list is
    /// sorted and deduplicated so the same filters always give the same ID.
    pub fn new(
        origin: Origin,
        target: Target,
        mut nct: Vec<NctId>,
        fields: Vec<FieldPattern>,
        min_severity: Severity,
        digest: DigestMode,
        created_at: Option<DateTime<Utc>>,
    ) -> Subscription {
        nct.sort();
        nct.dedup();
        let mut pats: Vec<&str> = fields.iter().map(FieldPattern::as_str).collect();
        pats.sort();
        pats.dedup();
        // The secret file is left out: pointing at a new file is not a new subscription.
        let canonical = serde_json::json!([
            target.kind(),
            target.address(),
            nct,
            pats,
            min_severity,
            digest,
        ]);
        let hash = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
        let prefix = match origin {
            Origin::Config => "cfg",
            Origin::Store => "sub",
        };
        Subscription {
            id: format!("{prefix}-{}", &hash[..10]),
            origin,
            target,
            nct,
            fields,
            min_severity,
            digest,
            created_at,
            events: Vec::new(),
            queries: Vec::new(),
        }
    }

    /// The same subscription hearing about `events` (empty: field changes only) of `queries`
    /// (empty: every query), with its ID recomputed. The ID of one with the defaults is the one
    /// [`Subscription::new`] gives, so subscriptions from before event kinds keep theirs.
    pub fn with_events(mut self, mut events: Vec<EventKind>, mut queries: Vec<String>) -> Self {
        events.sort();
        events.dedup();
        if events == [EventKind::Changes] {
            events.clear();
        }
        queries.sort();
        queries.dedup();
        if !queries.is_empty() && events.is_empty() {
            // `--query` alone means "tell me who enters and leaves it".
            events = vec![EventKind::QueryEntered, EventKind::QueryLeft];
        }
        if events.is_empty() && queries.is_empty() {
            return self;
        }
        let mut pats: Vec<&str> = self.fields.iter().map(FieldPattern::as_str).collect();
        pats.sort();
        pats.dedup();
        let canonical = serde_json::json!([
            self.target.kind(),
            self.target.address(),
            self.nct,
            pats,
            self.min_severity,
            self.digest,
            events,
            queries,
        ]);
        let hash = hex::encode(Sha256::digest(canonical.to_string().as_bytes()));
        let prefix = &self.id[..self.id.find('-').unwrap_or(0)];
        self.id = format!("{prefix}-{}", &hash[..10]);
        self.events = events;
        self.queries = queries;
        self
    }

    /// Whether it hears about events of this kind.
    pub fn wants_event(&self, kind: EventKind) -> bool {
        if self.events.is_empty() {
            kind == EventKind::Changes
        } else {
            self.events.contains(&kind)
        }
    }

    /// Whether it hears about an event of `kind` on `nct` with this severity; for a query
    /// event, `query` must be one of its queries (when it names any).
    pub fn wants_query_event(
        &self,
        kind: EventKind,
        query: &str,
        nct: &NctId,
        severity: Severity,
    ) -> bool {
        let query_event = matches!(kind, EventKind::QueryEntered | EventKind::QueryLeft);
        self.wants_event(kind)
            && severity >= self.min_severity
            && self.wants_trial(nct)
            && (!query_event || self.queries.is_empty() || self.queries.iter().any(|q| q == query))
    }

    /// Whether it hears about a health event (syncing failing or recovered) of this severity:
    /// such an event is about no trial, so the trial filter does not apply.
    pub fn wants_health_event(&self, severity: Severity) -> bool {
        self.wants_event(EventKind::Health) && severity >= self.min_severity
    }

    /// Whether changes to this trial concern the subscriber at all.
    pub fn wants_trial(&self, nct: &NctId) -> bool {
        self.nct.is_empty() || self.nct.contains(nct)
    }

    /// Whether a change at `path` passes the field filter (the watched fields when it has none).
    pub fn wants_path(&self, path: &str, watched: &WatchedFields) -> bool {
        if self.fields.is_empty() {
            watched.is_watched(path)
        } else {
            self.fields.iter().any(|p| p.matches(path))
        }
    }

    /// The paths of `changes` (with their severities) this subscription hears about.
    pub fn matching_paths(
        &self,
        nct: &NctId,
        changes: &[(&FieldChange, Severity)],
        watched: &WatchedFields,
    ) -> Vec<String> {
        if !self.wants_trial(nct) || !self.wants_event(EventKind::Changes) {
            return Vec::new();
        }
        changes
            .iter()
            .filter(|(c, sev)| *sev >= self.min_severity && self.wants_path(&c.path, watched))
            .map(|(c, _)| c.path.clone())
            .collect()
    }
}

/// Check an email address with lettre's parser (the one that will send to it), and refuse what
/// it would accept but a mailbox list would not (display names, angle brackets, spaces).
pub fn validate_email(s: &str) -> Result<String, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not an email address; write it as name@example.org (no display name, no <>)"
        )
    };
    if t.chars()
        .any(|c| c.is_whitespace() || "<>(),;\"".contains(c))
    {
        return Err(bad());
    }
    let address: lettre::Address = t.parse().map_err(|_| bad())?;
    // lettre accepts a bare host (`me@localhost`); a subscriber's address needs a dotted domain
    // or it is almost certainly a typo.
    if !address.domain().contains('.') && !address.domain().starts_with('[') {
        return Err(bad());
    }
    Ok(t.to_string())
}

/// Why a string is not an http(s) URL with a host. Each caller words its own message (with
/// its own key and example), so this carries only the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadHttpUrl {
    /// It does not parse as a URL at all; the parser's reason.
    Unparsable(String),
    /// It parses, but with this scheme (or without a host), so no HTTP client can reach it.
    NotHttp(String),
}

/// The one check for "an http:// or https:// URL with a host", shared by everything trialwatch
/// sends requests to or links to: the CT.gov base URL, webhooks, the mirror's canonical base.
/// `s` is parsed as given; callers that accept surrounding blanks trim first.
pub fn validate_http_url(s: &str) -> Result<reqwest::Url, BadHttpUrl> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(u),
        Ok(u) => Err(BadHttpUrl::NotHttp(u.scheme().to_string())),
        Err(e) => Err(BadHttpUrl::Unparsable(e.to_string())),
    }
}

/// A webhook URL must be http(s) with a host.
pub fn validate_webhook_url(s: &str) -> Result<String, String> {
    match validate_http_url(s.trim()) {
        Ok(_) => Ok(s.trim().to_string()),
        Err(BadHttpUrl::NotHttp(scheme)) => Err(format!(
            "{s:?} is a {scheme}: URL; a webhook must be http:// or https:// with a host, e.g. \"https://example.org/hooks/trialwatch\""
        )),
        Err(BadHttpUrl::Unparsable(e)) => Err(format!(
            "{s:?} is not a URL ({e}); e.g. \"https://example.org/hooks/trialwatch\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IDs of email and webhook subscriptions are what they were before chat targets (pinned
    /// values), and a chat target with the same URL as a webhook is a different subscription.
    #[test]
    fn existing_subscription_ids_do_not_change() {
        let id = |t: Target| {
            Subscription::new(
                Origin::Store,
                t,
                Vec::new(),
                Vec::new(),
                Severity::Minor,
                DigestMode::Immediate,
                None,
            )
            .id
        };
        let email = id(Target::Email {
            address: "me@example.org".into(),
        });
        let hook = id(Target::Webhook {
            url: "https://example.org/h".into(),
            secret_file: None,
        });
        let slack = id(Target::Chat {
            service: ChatService::Slack,
            url: "https://example.org/h".into(),
        });
        assert_eq!(
            (email.as_str(), hook.as_str()),
            ("sub-5fb9621802", "sub-e8c904c91e")
        );
        assert_ne!(slack, hook);
    }

    #[test]
    fn addresses_and_urls_are_validated_with_the_fix() {
        assert!(validate_email("me@example.org").is_ok());
        assert!(validate_email(" me+tw@sub.example.org ").is_ok());
        for bad in [
            "me",
            "me@",
            "@example.org",
            "me@exa mple.org",
            "Me <me@x.org>",
            "a@b@c",
        ] {
            let e = validate_email(bad).unwrap_err();
            assert!(e.contains("name@example.org"), "{bad}: {e}");
        }
        assert!(validate_webhook_url("https://example.org/hook").is_ok());
        assert!(validate_webhook_url("ftp://example.org/").is_err());
        assert!(validate_webhook_url("not a url").is_err());
    }
}
