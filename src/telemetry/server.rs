//! The HTTP server (`[telemetry] listen`) that serves `/metrics` and `/health`.

use super::{HealthPolicy, Metrics};
use crate::clock::SharedClock;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    policy: HealthPolicy,
    clock: SharedClock,
    /// Blanks secrets quoted in last errors (a server may echo our credentials).
    redactor: crate::secret::SharedRedactor,
}

/// Prometheus text format content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` and `/health` on `listen` until `shutdown` resolves. Binds before returning,
/// so a taken port is reported at startup; returns the bound address (useful with port 0).
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    policy: HealthPolicy,
    clock: SharedClock,
    redactor: crate::secret::SharedRedactor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(tokio::task::JoinHandle<std::io::Result<()>>, SocketAddr)> {
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {listen} ([telemetry] listen): {e}; choose a free address or \
                 remove the key to turn the metrics server off"
            ),
        )
    })?;
    let local = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(ServerState {
            metrics,
            policy,
            clock,
            redactor,
        });
    tracing::info!(listen = %local, "serving /metrics and /health");
    let handle = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((handle, local))
}

async fn metrics_handler(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        s.metrics.render(s.clock.now_ms()),
    )
}

async fn health_handler(
    axum::extract::State(s): axum::extract::State<ServerState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let h = s.metrics.health(s.clock.now_ms(), &s.policy);
    let code = axum::http::StatusCode::from_u16(h.http_status())
        .unwrap_or(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let body = serde_json::to_string(&h).unwrap_or_default();
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (code, json, s.redactor.current().redact(&body).into_owned()).into_response()
}
