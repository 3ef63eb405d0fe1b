//! The console's pages, rendered on the server with maud (which escapes
//! every value it interpolates). No page loads anything from elsewhere.

pub use agentca::rfc3339;
use agentca::wire::{AgentInfo, AgentVersion, AuditEvent};
use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use crate::metrics::history::Minute;

/// Who is looking, for the header and for which controls to show (the
/// authority decides what they may do).
pub struct Viewer<'a> {
    pub name: &'a str,
    pub tenant: Option<&'a str>,
    pub reads_only: bool,
    pub csrf: &'a str,
}

impl Viewer<'_> {
    fn global(&self) -> bool {
        self.tenant.is_none()
    }
}

/// "in 3m 20s", "5m ago": `t` from `now`, for people.
pub fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = (t - now).whole_seconds();
    if d == 0 {
        return "just now".into();
    }
    let a = d.unsigned_abs();
    let span = match a {
        0..=59 => format!("{a}s"),
        60..=3599 => format!("{}m {}s", a / 60, a % 60),
        3600..=86_399 => format!("{}h {}m", a / 3600, a % 3600 / 60),
        _ => format!("{}d", a / 86_400),
    };
    if d >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn time_cell(t: OffsetDateTime, now: OffsetDateTime) -> Markup {
    html! { time datetime=(rfc3339(t)) title=(rfc3339(t)) { (relative(t, now)) } }
}

/// The page around `body`.
pub fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · agentca" }
                link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    a.brand href="/ui" { "agentca" }
                    @if let Some(v) = viewer {
                        nav aria-label="Console" {
                            a href="/ui" { "Overview" }
                            a href="/ui/agents" { "Agents" }
                            @if v.global() { a href="/ui/audit" { "Audit" } }
                        }
                        div.who {
                            span { (v.name) }
                            @if let Some(t) = v.tenant { span.badge { "tenant " (t) } }
                            @if v.reads_only { span.badge { "auditor: reads only" } }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main id="main" { h1 { (title) } (body) }
            }
        }
    }
}

pub fn login(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            form.card.login method="post" action="/ui/login" {
                p { "Paste an admin token (" code { "agentca admin create" } " prints one; the local CA's is in "
                    code { "~/.local/share/agentca/ca/admin.token" } ")." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="off" required autofocus;
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Log in" }
            }
        },
    )
}

/// Agents of one tenant and environment, by state.
#[derive(Default)]
pub struct Group {
    pub tenant: String,
    pub env: String,
    pub enabled: usize,
    pub disabled: usize,
    pub retired: usize,
    pub live: usize,
}

pub struct Overview {
    pub groups: Vec<Group>,
    pub agents: usize,
    pub truncated: bool,
    /// SPIFFE ID, serial, notAfter of live certificates expiring soon.
    pub expiring: Vec<(String, String, OffsetDateTime)>,
    /// Agents idle for long: SPIFFE ID, last issuance.
    pub idle: Vec<(String, Option<OffsetDateTime>)>,
    /// From the audit trail (global admins only).
    pub revocations: Option<Vec<AuditEvent>>,
    pub clones: Option<Vec<AuditEvent>>,
    pub crl_this_update: OffsetDateTime,
    pub crl_next_update: OffsetDateTime,
    pub crl_entries: u64,
    pub chart: Vec<Minute>,
}

/// An inline SVG bar chart of issuance per minute: issued over refused.
pub fn chart(minutes: &[Minute]) -> Markup {
    let (w, h, bar) = (600.0, 120.0, 10.0);
    let peak = minutes
        .iter()
        .map(|m| m.ok + m.refused)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let ok: u64 = minutes.iter().map(|m| m.ok).sum();
    let refused: u64 = minutes.iter().map(|m| m.refused).sum();
    let label = format!(
        "Issuance over the last hour: {ok} issued, {refused} refused; at most {peak} in a minute"
    );
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {w} {}", h + 16.0)) role="img" aria-label=(label) {
                @for (i, m) in minutes.iter().enumerate() {
                    @let x = i as f64 * bar;
                    @let ok_h = m.ok as f64 / peak * h;
                    @let ref_h = m.refused as f64 / peak * h;
                    rect.ok x=(x) y=(h - ok_h) width=(bar - 2.0) height=(ok_h) {}
                    rect.refused x=(x) y=(h - ok_h - ref_h) width=(bar - 2.0) height=(ref_h) {}
                }
                line x1="0" y1=(h) x2=(w) y2=(h) {}
                text x="0" y=(h + 14.0) { "60 min ago" }
                text x=(w) y=(h + 14.0) text-anchor="end" { "now" }
                text x="2" y="10" { (peak) "/min" }
            }
            figcaption { (ok) " issued, " (refused) " refused in the last hour (this replica)" }
        }
    }
}

fn event_rows(events: &[AuditEvent], now: OffsetDateTime) -> Markup {
    html! {
        @for e in events.iter().rev() {
            tr class=(if e.outcome == "ok" { "" } else { "refused" }) {
                td { (e.seq) }
                td { (time_cell(e.at, now)) }
                td { (actor(e)) }
                td { (e.action) }
                td.id { (e.subject.as_deref().unwrap_or("")) }
                td { (e.outcome) @if let Some(c) = e.count { " ×" (c) } }
                td { (e.reason.as_deref().unwrap_or("")) }
            }
        }
    }
}

fn actor(e: &AuditEvent) -> String {
    use agentca::wire::Actor;
    match &e.actor {
        Actor::Admin { name } => format!("admin {name}"),
        Actor::Agent { spiffe_id, .. } => format!("agent {spiffe_id}"),
        Actor::Token { token_id } => format!("token {token_id}"),
        Actor::Anonymous => "anonymous".into(),
        Actor::System => "the CA".into(),
    }
}

fn events_table(events: &[AuditEvent], now: OffsetDateTime) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th { "#" } th { "when" } th { "who" } th { "action" } th { "subject" } th { "outcome" } th { "reason" } } }
                tbody { (event_rows(events, now)) }
            }
        }
    }
}

pub fn overview(v: &Viewer, o: &Overview, now: OffsetDateTime) -> Markup {
    let live: usize = o.groups.iter().map(|g| g.live).sum();
    let crl_fresh = now < o.crl_next_update;
    layout(
        "Overview",
        Some(v),
        html! {
            section.tiles aria-label="At a glance" {
                div.tile { span.n { (o.agents) } span { "agents" @if o.truncated { " (first " (o.agents) ")" } } }
                div.tile { span.n { (live) } span { "live certificates" } }
                div class=(if o.expiring.is_empty() { "tile" } else { "tile warn" }) {
                    span.n { (o.expiring.len()) } span { "expiring in 5 minutes" } }
                div class=(if o.clones.as_ref().is_some_and(|c| !c.is_empty()) { "tile bad" } else { "tile" }) {
                    span.n { (o.clones.as_ref().map_or("–".to_string(), |c| c.len().to_string())) } span { "clone alerts (recent)" } }
                div class=(if crl_fresh { "tile" } else { "tile bad" }) {
                    span.n { (relative(o.crl_this_update, now)) }
                    span { "CRL signed; next update " (relative(o.crl_next_update, now)) ", " (o.crl_entries) " entries" } }
            }
            form.search method="get" action="/ui/agents" role="search" {
                label for="q" { "Find an agent" }
                input id="q" name="q" type="search" placeholder="name, tenant or SPIFFE ID";
                button type="submit" { "Search" }
            }
            section { h2 { "Issuance and renewals, last hour" } (chart(&o.chart)) }
            section {
                h2 { "Agents by tenant and environment" }
                div.scroll { table {
                    thead { tr { th { "tenant" } th { "env" } th { "enabled" } th { "disabled" } th { "retired" } th { "live certificates" } } }
                    tbody { @for g in &o.groups { tr {
                        td { a href=(format!("/ui/agents?tenant={}", g.tenant)) { (g.tenant) } } td { (g.env) }
                        td { (g.enabled) } td class=(if g.disabled > 0 { "warn" } else { "" }) { (g.disabled) }
                        td { (g.retired) } td { (g.live) } } } }
                } }
            }
            div.columns {
                section {
                    h2 { "Expiring in the next 5 minutes" }
                    @if o.expiring.is_empty() { p.quiet { "None." } } @else { ul { @for (id, serial, at) in &o.expiring {
                        li { (agent_link(id)) " " code { (serial) } " " (time_cell(*at, now)) } } } }
                }
                section {
                    h2 { "Idle for an hour or more" }
                    @if o.idle.is_empty() { p.quiet { "None." } } @else { ul { @for (id, at) in o.idle.iter().take(50) {
                        li { (agent_link(id)) " " @match at { Some(t) => { "last issued " (time_cell(*t, now)) }, None => { "never issued" } } } } } }
                }
            }
            @match (&o.revocations, &o.clones) {
                (Some(revocations), Some(clones)) => {
                    section { h2 { "Recent revocations" }
                        @if revocations.is_empty() { p.quiet { "None in the recent trail." } } @else { (events_table(revocations, now)) } }
                    section { h2 { "Clone alerts" }
                        @if clones.is_empty() { p.quiet { "None in the recent trail." } } @else { (events_table(clones, now)) } }
                }
                _ => { p.quiet { "Revocations and clone alerts come from the audit trail, which global admins read." } }
            }
        },
    )
}

fn agent_link(spiffe_id: &str) -> Markup {
    match agent_path(spiffe_id) {
        Some(path) => html! { a.id href=(format!("/ui/agents/{path}")) { (spiffe_id) } },
        None => html! { span.id { (spiffe_id) } },
    }
}

/// `tenant/env/agent` of a SPIFFE ID the CA wrote.
pub fn agent_path(spiffe_id: &str) -> Option<String> {
    agentca::identity::AgentId::parse(spiffe_id)
        .ok()
        .map(|id| id.path_key())
}

pub fn agents(
    v: &Viewer,
    list: &[AgentInfo],
    q: &str,
    truncated: bool,
    now: OffsetDateTime,
) -> Markup {
    layout(
        "Agents",
        Some(v),
        html! {
            form.search method="get" action="/ui/agents" role="search" {
                label for="q" { "Find an agent" }
                input id="q" name="q" type="search" value=(q) placeholder="name, tenant or SPIFFE ID" autofocus;
                button type="submit" { "Search" }
            }
            p.quiet { (list.len()) " agents" @if truncated { ", the first ones only: narrow the search" } "." }
            div.scroll { table data-filter="q" {
                thead { tr { th { "agent" } th { "state" } th { "scopes" } th { "live" } th { "last issued" } } }
                tbody { @for a in list { tr {
                    td { (agent_link(&a.spiffe_id.to_string())) }
                    td { (state(a)) }
                    td { (a.scopes.join(" ")) }
                    td { (a.live_certificates.len()) }
                    td { @match a.last_issued_at { Some(t) => (time_cell(t, now)), None => "never" } }
                } } }
            } }
        },
    )
}

/// An agent's state, as the pages name it.
pub fn state(a: &AgentInfo) -> &'static str {
    match (a.retired_at.is_some(), a.enabled) {
        (true, _) => "retired",
        (false, true) => "enabled",
        (false, false) => "disabled",
    }
}

pub struct AgentPage<'a> {
    pub info: &'a AgentInfo,
    pub path: &'a str,
    pub history: &'a [AgentVersion],
    pub events: Option<Vec<AuditEvent>>,
    pub done: Option<&'a str>,
    pub error: Option<&'a str>,
}

fn confirm(id: &str) -> Markup {
    html! {
        label.confirm for=(id) { input id=(id) type="checkbox" name="confirm" value="yes" required; " I am sure" }
    }
}

pub fn agent(v: &Viewer, p: &AgentPage, now: OffsetDateTime) -> Markup {
    let a = p.info;
    let action = |what: &str| format!("/ui/agents/{}/{what}", p.path);
    layout(
        &a.spiffe_id.to_string(),
        Some(v),
        html! {
            @if let Some(done) = p.done { p.done role="status" { (done) } }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            section.card {
                dl {
                    dt { "state" } dd { (state(a)) }
                    dt { "owner" } dd { (a.owner) }
                    dt { "purpose" } dd { (a.purpose) }
                    dt { "scopes" } dd { @if a.scopes.is_empty() { "none" } @else { (a.scopes.join(", ")) } }
                    dt { "certificate lifetime" } dd { (a.ttl_seconds) " s" }
                    dt { "version" } dd { (a.version) }
                    dt { "last issued" } dd { @match a.last_issued_at { Some(t) => (time_cell(t, now)), None => "never" } }
                    dt { "tokens" } dd { "stored as hashes and never shown again; " code { "agentca token" } " issues a new one" }
                }
            }
            @if !v.reads_only && a.retired_at.is_none() {
                section.actions aria-label="Actions" {
                    h2 { "Actions" }
                    form.card method="post" action=(action("revoke")) {
                        h3 { "Revoke" }
                        p { "Revokes every live certificate of the agent, disables it and voids its unused tokens." }
                        input type="hidden" name="csrf" value=(v.csrf);
                        label for="reason" { "Reason" }
                        select id="reason" name="reason" {
                            @for r in ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified"] { option value=(r) { (r) } }
                        }
                        (confirm("confirm-revoke"))
                        button.danger type="submit" { "Revoke " (a.spiffe_id.agent()) }
                    }
                    form.card method="post" action=(action(if a.enabled { "disable" } else { "enable" })) {
                        h3 { @if a.enabled { "Disable" } @else { "Enable" } }
                        p { @if a.enabled { "It keeps its live certificates but can neither renew nor enroll." } @else { "It may enroll again with a new token." } }
                        input type="hidden" name="csrf" value=(v.csrf);
                        (confirm("confirm-enable"))
                        button type="submit" { @if a.enabled { "Disable" } @else { "Enable" } }
                    }
                    @if !a.scopes.is_empty() {
                        form.card method="post" action=(action("block")) {
                            h3 { "Block a scope" }
                            p { "Services refuse the scope within a second; the agent stays online with its other scopes." }
                            input type="hidden" name="csrf" value=(v.csrf);
                            label for="scope" { "Scope" }
                            select id="scope" name="scope" { @for s in &a.scopes { option value=(s) { (s) } } }
                            label for="block-reason" { "Reason" }
                            input id="block-reason" name="reason" maxlength="200" required;
                            (confirm("confirm-block"))
                            button.danger type="submit" { "Block for this agent" }
                        }
                    }
                }
            }
            section {
                h2 { "Live certificates" }
                @if a.live_certificates.is_empty() { p.quiet { "None." } } @else { div.scroll { table {
                    thead { tr { th { "serial" } th { "instance" } th { "expires" } th { "scopes" } th { "withdrawn" } } }
                    tbody { @for c in &a.live_certificates { tr {
                        td { code { (c.serial) } } td { code { (c.instance_id) } }
                        td { (time_cell(c.not_after, now)) }
                        td { (c.scopes.as_ref().map(|s| s.join(" ")).unwrap_or_default()) }
                        td { (c.withdrawn.join(" ")) }
                    } } }
                } } }
                @if a.live_certificates_truncated { p.quiet { "More live certificates than shown." } }
            }
            @if !a.clone_alerts.is_empty() {
                section { h2.bad { "Clone alerts" } ul { @for c in &a.clone_alerts {
                    li { (time_cell(c.at, now)) ": certificate " code { (c.serial) } " renewed again with another key"
                        @if let Some(addr) = &c.remote_addr { " from " (addr) } } } } }
            }
            section {
                h2 { "Registration history" }
                div.scroll { table {
                    thead { tr { th { "version" } th { "when" } th { "by" } th { "change" } } }
                    tbody { @for h in p.history.iter().rev() { tr {
                        td { (h.version) } td { (time_cell(h.at, now)) } td { (h.by) } td { (h.change) } } } }
                } }
            }
            section {
                h2 { "Audit events" }
                @match &p.events {
                    Some(events) if events.is_empty() => { p.quiet { "None in the recent trail." } }
                    Some(events) => { (events_table(events, now)) }
                    None => { p.quiet { "The audit trail is for global admins." } }
                }
            }
        },
    )
}

pub struct AuditFilter {
    pub action: String,
    pub subject: String,
    pub outcome: String,
}

pub fn audit(
    v: &Viewer,
    f: &AuditFilter,
    shown: &[AuditEvent],
    read: usize,
    verified: &Result<u64, String>,
    now: OffsetDateTime,
) -> Markup {
    layout(
        "Audit trail",
        Some(v),
        html! {
            @match verified {
                Ok(n) => { p.done role="status" { "The last " (n) " events verify: each hash is right, each links to the one before, and the last is the CA's recorded head. "
                    code { "agentca audit verify" } " checks the whole trail." } }
                Err(e) => { p.error role="alert" { "The trail does not verify: " (e) } }
            }
            form.search method="get" action="/ui/audit" {
                label for="action" { "Action" } input id="action" name="action" value=(f.action) placeholder="revoke";
                label for="subject" { "Subject contains" } input id="subject" name="subject" value=(f.subject);
                label for="outcome" { "Outcome" }
                select id="outcome" name="outcome" {
                    @for o in ["", "ok", "refused"] { option value=(o) selected[f.outcome == o] { @if o.is_empty() { "any" } @else { (o) } } }
                }
                button type="submit" { "Filter" }
            }
            p.quiet { (shown.len()) " of the last " (read) " events." }
            (events_table(shown, now))
        },
    )
}

/// The console's style sheet and script, served from the binary.
pub const CSS: &str = include_str!("console.css");
pub const JS: &str = include_str!("console.js");
pub const ICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0550ae"/><path d="M4 11l4-7 4 7z" fill="#fff"/></svg>"##;

/// A page for a refusal the console cannot show in context.
pub fn problem(v: Option<&Viewer>, title: &str, detail: &str) -> Markup {
    layout(
        title,
        v,
        html! { p.error role="alert" { (detail) } p { a href="/ui" { "Back to the overview" } } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let at = |s: i64| now + time::Duration::seconds(s);
        assert_eq!(relative(at(0), now), "just now");
        assert_eq!(relative(at(42), now), "in 42s");
        assert_eq!(relative(at(-200), now), "3m 20s ago");
        assert_eq!(relative(at(7260), now), "in 2h 1m");
        assert_eq!(relative(at(-3 * 86_400), now), "3d ago");
    }

    #[test]
    fn values_are_escaped_and_agent_links_come_from_spiffe_ids() {
        let html = problem(None, "x", "<script>alert(1)</script>").into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(
            agent_path("spiffe://td/tenant/a/env/b/agent/c").as_deref(),
            Some("a/b/c")
        );
        assert_eq!(agent_path("spiffe://td/other/path"), None);
    }

    #[test]
    fn the_chart_says_what_it_shows() {
        let minutes: Vec<Minute> = (0..60)
            .map(|i| Minute {
                minute: i,
                ok: i as u64 % 3,
                refused: u64::from(i == 59),
            })
            .collect();
        let svg = chart(&minutes).into_string();
        assert_eq!(svg.matches("<rect class=\"ok\"").count(), 60);
        assert!(svg.contains("aria-label=\"Issuance over the last hour: 60 issued, 1 refused; at most 3 in a minute\""), "{svg}");
    }
}
