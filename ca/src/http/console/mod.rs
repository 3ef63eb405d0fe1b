//! The admin console under `/ui`, on the API's listener and TLS: pages
//! rendered on the server, a style sheet and a small script served from
//! the binary, nothing from elsewhere (a strict Content-Security-Policy
//! says so to the browser).
//!
//! An admin logs in with an admin token ([`session`]); every page and
//! every button calls the same [`Authority`] methods as the API, as that
//! admin, so who may see and do what is decided there and audited there.
//! Forms carry the session's anti-forgery token and are refused without
//! it, or from another origin.

mod pages;
mod read;
pub mod session;

use std::sync::Arc;

use agentca::wire::{AuditEvent, BlockScopeRequest, RevokeRequest};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use serde::Deserialize;

use super::extract::{now, Ctx};
use super::AppState;
use crate::authority::{Admin, AgentName, AuthorityError, RequestContext};
use pages::Viewer;
use session::{cookie, same_secret, set_cookie, Sessions, COOKIE, LOGIN_COOKIE};

/// Most audit events a page reads from the end of the trail.
pub const TAIL: usize = 5000;
/// Most agents a page lists.
pub const MAX_AGENTS: usize = 2000;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(read::overview))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/agents", get(read::agents))
        .route("/ui/agents/{tenant}/{env}/{agent}", get(agent))
        .route("/ui/agents/{tenant}/{env}/{agent}/{action}", post(act))
        .route("/ui/audit", get(read::audit))
        .route("/ui/static/console.css", get(css))
        .route("/ui/static/console.js", get(js))
        .route("/ui/static/icon.svg", get(icon))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(Extension(Arc::new(Sessions::default())))
}

/// What every console answer says to the browser: run nothing from
/// elsewhere, never frame it, keep it out of caches and other sites' referrers.
async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // same-origin, not no-referrer: with no-referrer the browser sends
    // `Origin: null` on form posts, and the origin check needs the origin.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A logged-in admin: the session's, authenticated again on every request.
struct Console {
    admin: Admin,
    csrf: String,
    session: String,
    ctx: RequestContext,
}

impl Console {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: self.admin.name(),
            tenant: self.admin.tenant(),
            reads_only: self.admin.reads_only(),
            csrf: &self.csrf,
        }
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ca: &AppState) -> Result<Self, Response> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Ctx(ctx) = Ctx::from_request_parts(parts, ca)
            .await
            .unwrap_or_else(|never| match never {});
        let sessions = parts
            .extensions
            .get::<Arc<Sessions>>()
            .cloned()
            .ok_or_else(to_login)?;
        let id = cookie_of(&parts.headers, COOKIE).ok_or_else(to_login)?;
        let session = sessions.get(&id, now()).ok_or_else(to_login)?;
        // An admin revoked since the login is out now; a store that does
        // not answer ends nothing.
        let admin = match ca.admin_by_key(&ctx, &session.admin).await {
            Ok(admin) => admin,
            Err(AuthorityError::Unauthorized) => {
                sessions.end(&id);
                return Err(to_login());
            }
            Err(e) => {
                let text = e.to_string();
                let status = super::ApiError::from(e).status;
                let page = pages::problem(None, "Unavailable", &text).into_string();
                return Err((status, Html(page)).into_response());
            }
        };
        Ok(Console {
            admin,
            csrf: session.csrf,
            session: id,
            ctx,
        })
    }
}

fn cookie_of(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| cookie(v, name))
        .map(str::to_owned)
}

/// Whether a form post may be acted on: from this origin (when the
/// browser says), with the expected anti-forgery token.
/// (The host is the `Host` header's, or HTTP/2's `:authority`, which is
/// the URI's.)
fn form_allowed(headers: &HeaderMap, uri: &axum::http::Uri, expected: &str, given: &str) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let same_origin = match (headers.get(header::ORIGIN), host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    };
    same_origin && !given.is_empty() && same_secret(expected, given)
}

fn forbidden_form() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            pages::problem(
                None,
                "Refused",
                "The form was not sent from this console's page (its anti-forgery token is missing or wrong). Reload the page and try again.",
            )
            .into_string(),
        ),
    )
        .into_response()
}

fn page(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

fn problem(c: &Console, e: AuthorityError) -> Response {
    let text = e.to_string();
    let status = super::ApiError::from(e).status;
    (
        status,
        Html(pages::problem(Some(&c.viewer()), "Refused", &text).into_string()),
    )
        .into_response()
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        pages::JS,
    )
}

async fn icon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], pages::ICON)
}

async fn login_form() -> Response {
    let csrf = session::random_id();
    (
        [(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf))],
        page(pages::login(&csrf, None)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(ca): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie_of(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !form_allowed(&headers, &uri, &expected, &form.csrf) {
        return forbidden_form();
    }
    let retry = |status: StatusCode, why: &str| {
        let csrf = session::random_id();
        (
            status,
            [(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf))],
            page(pages::login(&csrf, Some(why))),
        )
            .into_response()
    };
    // The refusal is audited by the authority, as the API's are.
    let Ok((admin, key)) = ca.admin_key(&ctx, form.token.trim()).await else {
        return retry(
            StatusCode::UNAUTHORIZED,
            "That is not an admin token of this CA.",
        );
    };
    let Some(id) = sessions.start(key, now()) else {
        return retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many console sessions are open; try again later.",
        );
    };
    ca.console_session(&ctx, &admin, "console.login").await;
    let mut response = Redirect::to("/ui").into_response();
    let h = response.headers_mut();
    for value in [set_cookie(COOKIE, &id), set_cookie(LOGIN_COOKIE, "")] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(ca): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    c: Console,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !form_allowed(&headers, &uri, &c.csrf, &form.csrf) {
        return forbidden_form();
    }
    sessions.end(&c.session);
    ca.console_session(&c.ctx, &c.admin, "console.logout").await;
    (
        [(header::SET_COOKIE, set_cookie(COOKIE, ""))],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AgentQuery {
    done: Option<String>,
}

async fn agent(
    State(ca): State<AppState>,
    c: Console,
    axum::extract::Path((tenant, env, agent)): axum::extract::Path<(String, String, String)>,
    Query(query): Query<AgentQuery>,
) -> Response {
    let name = super::admin::agent_name((tenant, env, agent));
    agent_page(&ca, &c, &name, query.done.as_deref(), None).await
}

async fn agent_page(
    ca: &AppState,
    c: &Console,
    name: &AgentName,
    done: Option<&str>,
    error: Option<&str>,
) -> Response {
    let now = now();
    let info = match ca.show_agent(&c.ctx, &c.admin, name, now).await {
        Ok(info) => info,
        Err(e) => return problem(c, e),
    };
    let history = ca
        .agent_history(&c.ctx, &c.admin, name, None, now)
        .await
        .unwrap_or_default();
    let id = info.spiffe_id.to_string();
    let events = read::tail(ca, c, false).await.map(|t| {
        let mut mine: Vec<AuditEvent> = t
            .events
            .into_iter()
            .filter(|e| e.subject.as_deref() == Some(id.as_str()))
            .collect();
        let skip = mine.len().saturating_sub(100);
        mine.drain(..skip);
        mine
    });
    let path = format!("{}/{}/{}", name.tenant, name.env, name.agent);
    let done = done.and_then(|d| match d {
        "revoked" => {
            Some("Revoked: its certificates are on the CRL and the feed, and it is disabled.")
        }
        "disabled" => Some("Disabled."),
        "enabled" => Some("Enabled."),
        "blocked" => Some("Blocked: services refuse the scope for this agent."),
        _ => None,
    });
    page(pages::agent(
        &c.viewer(),
        &pages::AgentPage {
            info: &info,
            path: &path,
            history: &history,
            events,
            done,
            error,
        },
        now,
    ))
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    confirm: String,
    reason: Option<String>,
    scope: Option<String>,
}

async fn act(
    State(ca): State<AppState>,
    c: Console,
    headers: HeaderMap,
    uri: axum::http::Uri,
    axum::extract::Path((tenant, env, agent, action)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !form_allowed(&headers, &uri, &c.csrf, &form.csrf) {
        return forbidden_form();
    }
    let name = super::admin::agent_name((tenant, env, agent));
    if form.confirm != "yes" {
        let why = "Tick \"I am sure\" to confirm.";
        return agent_page(&ca, &c, &name, None, Some(why)).await;
    }
    let now = now();
    let result = match action.as_str() {
        "revoke" => ca
            .revoke(
                &c.ctx,
                &c.admin,
                RevokeRequest {
                    tenant: Some(name.tenant.clone()),
                    env: Some(name.env.clone()),
                    agent: Some(name.agent.clone()),
                    reason: form.reason.clone(),
                    ..Default::default()
                },
                now,
            )
            .await
            .map(|_| "revoked"),
        "disable" => ca
            .set_enabled(&c.ctx, &c.admin, &name, false, now)
            .await
            .map(|_| "disabled"),
        "enable" => ca
            .set_enabled(&c.ctx, &c.admin, &name, true, now)
            .await
            .map(|_| "enabled"),
        "block" => ca
            .block_scope(
                &c.ctx,
                &c.admin,
                BlockScopeRequest {
                    scope: form.scope.clone().unwrap_or_default(),
                    tenant: Some(name.tenant.clone()),
                    env: Some(name.env.clone()),
                    agent: Some(name.agent.clone()),
                    reason: form.reason.clone(),
                },
                now,
            )
            .await
            .map(|_| "blocked"),
        _ => return (StatusCode::NOT_FOUND, "no such action").into_response(),
    };
    match result {
        // Post, redirect, get: a reload does not act twice.
        Ok(done) => Redirect::to(&format!(
            "/ui/agents/{}/{}/{}?done={done}",
            name.tenant, name.env, name.agent
        ))
        .into_response(),
        Err(e) => agent_page(&ca, &c, &name, None, Some(&e.to_string())).await,
    }
}
