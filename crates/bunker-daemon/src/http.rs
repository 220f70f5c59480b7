//! HTTP: `GET /metrics` (Prometheus text format), `/healthz`, `/readyz`,
//! and a JSON API under `/api/v1`. With a token, every request but the
//! health checks needs `Authorization: Bearer TOKEN`. Responses carry
//! names, times, counts and one-line errors — never a password, option
//! value or repository key.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bunker_engine::pool::{PoolOptions, RepoPool};
use bunker_engine::retention::item_filter;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::history::{self, History};
use crate::runner::LogSink;
use crate::scheduler::RequestError;
use crate::state::{eval_rpo, Msg, Shared};

type AppState = Arc<Shared>;

/// The daemon's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/items", get(items))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/snapshots", get(snapshots))
        .route("/api/v1/items/{name}/run", post(run_now))
        .route_layer(middleware::from_fn_with_state(shared.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .with_state(shared)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

/// Constant-time comparison: the token is not guessable byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({"error": "a bearer token is required (Authorization: Bearer TOKEN)"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let body = s.metrics().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(s): State<AppState>) -> Json<Value> {
    let now = Utc::now();
    let jobs = s.scheduler().states(now);
    let running: Vec<&str> = jobs
        .iter()
        .filter(|j| j.running)
        .map(|j| j.id.as_str())
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started": s.started,
        "now": now,
        "ready": s.is_ready(),
        "stopping": s.stopping.load(std::sync::atomic::Ordering::SeqCst),
        "policy": s.policy_path.display().to_string(),
        "running": running,
        "jobs": jobs,
    }))
}

async fn items(State(s): State<AppState>) -> Json<Value> {
    let now = Utc::now();
    let policy = s.policy();
    let jobs = s.scheduler().states(now);
    let truth = s.truth().clone();
    let list: Vec<Value> = policy
        .items
        .iter()
        .map(|i| {
            let job = jobs.iter().find(|j| j.id == format!("backup:{}", i.name));
            let rpo = i
                .rpo
                .map(|r| eval_rpo(truth.recovery_point(&i.name), r, now));
            json!({
                "name": i.name,
                "kind": i.kind().as_str(),
                "priority": i.priority.as_str(),
                "schedule": i.schedule.as_ref().map(ToString::to_string),
                "targets": i.targets,
                "rpo_seconds": i.rpo.map(|d| d.as_secs()),
                "rpo_breached": rpo.map(|e| e.breached),
                "recovery_point": truth.recovery_point(&i.name),
                "newest": truth.newest.get(&i.name),
                "wal_last_archived": truth.wal.get(&i.name),
                "next": job.and_then(|j| j.next),
                "running": job.is_some_and(|j| j.running),
            })
        })
        .collect();
    Json(json!({ "items": list }))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    item: Option<String>,
    job: Option<String>,
    limit: Option<usize>,
}

async fn runs(State(s): State<AppState>, Query(q): Query<RunsQuery>) -> Response {
    let dir = s.state_dir.clone();
    let listed = tokio::task::spawn_blocking(move || {
        History::open_read_only(&dir)?.list(&history::Query {
            item: q.item,
            job: q.job,
            limit: q.limit,
        })
    })
    .await;
    match listed {
        Ok(Ok(rows)) => Json(json!({ "runs": rows })).into_response(),
        Ok(Err(history::HistoryError::Missing(_))) => Json(json!({ "runs": [] })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ItemQuery {
    item: String,
}

async fn snapshots(State(s): State<AppState>, Query(q): Query<ItemQuery>) -> Response {
    let policy = s.policy();
    if policy.item(&q.item).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no item {:?}", q.item));
    }
    let pool = PoolOptions {
        create: false,
        ..s.pool.clone()
    };
    let name = q.item.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let Some(item) = policy.item(&q.item) else {
            return Vec::new();
        };
        let sink = LogSink;
        let mut pool = RepoPool::new(&policy, pool, &sink);
        let mut out = Vec::new();
        for t in &item.targets {
            let listed = pool.get(t).map_err(|e| e.one_line()).and_then(|o| {
                bunker_repo::snapshots::filtered(&o.repo, &item_filter(item), None)
                    .map_err(|e| bunker_engine::error::one_line(&e))
            });
            match listed {
                Ok(entries) => {
                    let snaps: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            json!({
                                "id": e.id.to_hex(),
                                "short_id": e.id.short(),
                                "time": e.snapshot.time,
                                "hostname": e.snapshot.hostname,
                                "paths": e.snapshot.paths,
                                "tags": e.snapshot.tags,
                            })
                        })
                        .collect();
                    out.push(json!({ "target": t, "snapshots": snaps }));
                }
                Err(e) => out.push(json!({ "target": t, "error": e })),
            }
        }
        out
    })
    .await
    .unwrap_or_default();
    Json(json!({ "item": name, "targets": listed })).into_response()
}

async fn run_now(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    if s.policy().item(&name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no item {name:?}"));
    }
    let (tx, rx) = oneshot::channel();
    if s.tx
        .send(Msg::RunNow(format!("backup:{name}"), tx))
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match rx.await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(json!({ "item": name, "queued": true })),
        )
            .into_response(),
        Ok(Err(RequestError::Running(_))) => {
            error(StatusCode::CONFLICT, format!("{name} is running now"))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}
