//! The axum server: routes, bearer-token check, JSON errors, graceful stop.
//!
//! | endpoint | |
//! |---|---|
//! | `GET /healthz` | `{"status":"ok"}` (no token needed) |
//! | `GET /api/stats` | [`super::Stats`] |
//! | `GET /api/events?stream=&kind=&phase=&after=&limit=` | the kept messages, oldest first |
//! | `GET /api/events/stream?stream=&kind=&phase=` | live messages as Server-Sent Events |
//! | `GET /api/events/{id}/snapshot.jpg` | the event's snapshot |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//! | `GET /` | the live view: each stream's picture, the live event list, a timeline |
//! | `GET /api/streams/{name}/frame.jpg` | the stream's latest picture with its track boxes |
//! | `GET /api/streams/{name}/mjpeg` | those pictures as MJPEG (`multipart/x-mixed-replace`) |

use super::hub::{Hub, Item};
use super::metrics::Metrics;
use super::HttpConfig;
use crate::core::event::Event;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Errors of the HTTP server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `listen` is not an address.
    #[error("[http] listen = {listen:?}: not an address and port ({reason})")]
    Address {
        /// The value.
        listen: String,
        /// Why.
        reason: String,
    },
    /// The address could not be bound (in use, no permission).
    #[error("[http] cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `token_env` names a variable that is not set.
    #[error("[http] token_env = {var:?}: the environment variable is not set or empty")]
    Token {
        /// The variable.
        var: String,
    },
    /// The server's thread or runtime could not start.
    #[error("[http] cannot start the server")]
    Start {
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running HTTP server (stops when dropped or with [`HttpServer::stop`]).
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone)]
struct App {
    hub: Hub,
    token: Option<Arc<str>>,
    registry: Arc<prometheus_client::registry::Registry>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl HttpServer {
    /// Binds `cfg.listen` and serves `hub` on a thread of its own.
    pub fn start(cfg: &HttpConfig, hub: Hub) -> Result<Self, HttpError> {
        let addr = match cfg.addr() {
            Some(Ok(a)) => a,
            Some(Err(reason)) => {
                return Err(HttpError::Address {
                    listen: cfg.listen.clone().unwrap_or_default(),
                    reason,
                })
            }
            None => SocketAddr::from(([127, 0, 0, 1], 5000)),
        };
        let token = match &cfg.token_env {
            Some(var) => match std::env::var(var) {
                Ok(t) if !t.is_empty() => Some(Arc::from(t.as_str())),
                _ => return Err(HttpError::Token { var: var.clone() }),
            },
            None => None,
        };
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| HttpError::Start { source })?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Metrics(hub.clone())));
        let app = App {
            hub,
            token,
            registry: Arc::new(registry),
            stop: stop_rx.clone(),
        };
        let router = router(app);
        let thread = std::thread::Builder::new()
            .name("avsense-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("[http] {addr}: {e}");
                            return;
                        }
                    };
                    let mut stop = stop_rx;
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                    if let Err(e) = served {
                        tracing::error!("[http] {addr}: {e}");
                    }
                });
            })
            .map_err(|source| HttpError::Start { source })?;
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it serves on (the port the OS chose for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: live streams end, open requests finish, the thread ends.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn router(app: App) -> Router {
    let api = Router::new()
        .route("/api/stats", get(stats))
        .route("/api/events", get(events))
        .route("/api/events/stream", get(live))
        .route("/api/events/{id}/snapshot.jpg", get(snapshot))
        .route("/metrics", get(metrics))
        .route("/api/streams/{name}/frame.jpg", get(frame))
        .route("/api/streams/{name}/mjpeg", get(mjpeg))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/", get(page))
        .merge(api)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint (see README, HTTP API)",
            )
        })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served")
        })
        .with_state(app)
}

/// A JSON error response: `{"error": "…"}`.
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

async fn auth(State(app): State<App>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            g.len() == token.len()
                && g.bytes()
                    .zip(token.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        });
        if !ok {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    next.run(req).await
}

async fn stats(State(app): State<App>) -> Response {
    Json(app.hub.stats()).into_response()
}

/// The filters of `/api/events` and its live stream.
#[derive(Default)]
struct Filter {
    stream: Option<String>,
    kind: Option<String>,
    phase: Option<String>,
    after: u64,
    limit: usize,
}

impl Filter {
    fn parse(
        q: Result<Query<Vec<(String, String)>>, QueryRejection>,
        paged: bool,
    ) -> Result<Self, Response> {
        let Query(pairs) = q.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
        let mut f = Filter {
            limit: 100,
            ..Default::default()
        };
        let bad = |k: &str, v: &str, want: &str| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{k}={v:?}: expected {want}"),
            )
        };
        for (k, v) in pairs {
            match k.as_str() {
                "stream" => f.stream = Some(v),
                "kind" => {
                    if serde_json::from_value::<crate::EventKind>(serde_json::Value::String(
                        v.clone(),
                    ))
                    .is_err()
                    {
                        return Err(bad(&k, &v, "an event kind such as object, sound, speech"));
                    }
                    f.kind = Some(v);
                }
                "phase" => {
                    if crate::core::event::Phase::parse(&v).is_none() {
                        return Err(bad(&k, &v, "start, update or end"));
                    }
                    f.phase = Some(v);
                }
                "after" if paged => {
                    f.after = v
                        .parse()
                        .map_err(|_| bad(&k, &v, "a cursor (a number from a previous answer)"))?
                }
                "limit" if paged => {
                    f.limit = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| bad(&k, &v, "1 to 10000"))?
                }
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown parameter {k:?} (expected {})",
                            if paged {
                                "stream, kind, phase, after, limit"
                            } else {
                                "stream, kind, phase"
                            }
                        ),
                    ))
                }
            }
        }
        Ok(f)
    }

    fn keep(&self, e: &Event) -> bool {
        self.stream.as_deref().is_none_or(|s| s == e.stream)
            && self.phase.as_deref().is_none_or(|p| p == e.phase.as_str())
            && self.kind.as_deref().is_none_or(|k| {
                serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s == k))
                    == Some(true)
            })
    }
}

async fn events(
    State(app): State<App>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let f = match Filter::parse(q, true) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let items = app.hub.recent(f.after, f.limit, |e| f.keep(e));
    let cursor = items.last().map_or(f.after, |i| i.seq);
    // The events as they were written (no re-serialisation).
    let mut body = String::from("{\"cursor\":");
    body.push_str(&cursor.to_string());
    body.push_str(",\"events\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&it.json);
    }
    body.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn live(
    State(app): State<App>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let f = match Filter::parse(q, false) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let rx = app.hub.0.live.subscribe();
    let stop = app.stop.clone();
    let stream = futures_util::stream::unfold((rx, stop, f), |(mut rx, mut stop, f)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return None,
            };
            match next {
                Ok(Item { seq, event, json }) => {
                    if !f.keep(&event) {
                        continue;
                    }
                    let ev = axum::response::sse::Event::default()
                        .id(seq.to_string())
                        .event(event.phase.as_str())
                        .data(&*json);
                    return Some((Ok::<_, std::convert::Infallible>(ev), (rx, stop, f)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let ev = axum::response::sse::Event::default()
                        .comment(format!("{n} messages skipped: this client fell behind"));
                    return Some((Ok(ev), (rx, stop, f)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn snapshot(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Some(e) = app.hub.snapshot_of(&id) else {
        let why = if app.hub.knows(&id) {
            "this event has no snapshot (objects, sound sources and active speakers with [snapshots] enabled have one, on their end message)"
        } else {
            "no such event among the kept messages"
        };
        return error(StatusCode::NOT_FOUND, format!("event {id:?}: {why}"));
    };
    let Some(s) = &e.snapshot else {
        return error(StatusCode::NOT_FOUND, "no snapshot");
    };
    match tokio::fs::read(&s.path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response(),
        Err(err) => error(StatusCode::NOT_FOUND, format!("snapshot {}: {err}", s.path)),
    }
}

/// The live view's page (no external resource: everything it uses is served here).
async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("view.html"),
    )
        .into_response()
}

async fn frame(State(app): State<App>, Path(name): Path<String>) -> Response {
    let view = &app.hub.0.view;
    view.asked();
    match view.picture(&name) {
        Some(p) => (
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (header::HeaderName::from_static("x-frame-seq"), p.seq.to_string()),
                (header::HeaderName::from_static("x-frame-pts"), format!("{:.3}", p.pts)),
            ],
            p.jpeg.to_vec(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("stream {name:?}: no picture yet (pictures are made while the view is watched, from the next video frame)"),
        ),
    }
}

async fn mjpeg(State(app): State<App>, Path(name): Path<String>) -> Response {
    let view = app.hub.0.view.clone();
    view.asked();
    let stop = app.stop.clone();
    let frames = futures_util::stream::unfold(
        (view, name, 0u64, stop),
        |(view, name, last, stop)| async move {
            loop {
                if *stop.borrow() {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                view.asked();
                if let Some(p) = view.picture(&name).filter(|p| p.seq != last) {
                    let mut part = format!(
                        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        p.jpeg.len()
                    )
                    .into_bytes();
                    part.extend_from_slice(&p.jpeg);
                    part.extend_from_slice(b"\r\n");
                    return Some((
                        Ok::<_, std::convert::Infallible>(part),
                        (view, name, p.seq, stop),
                    ));
                }
            }
        },
    );
    (
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=frame",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(frames),
    )
        .into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &app.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded",
        ),
    }
}
