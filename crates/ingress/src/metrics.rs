//! The metrics endpoint, off unless `metrics_listen` is set: `GET /metrics` (the node's
//! Prometheus registry in the OpenMetrics text format) and `GET /healthz`.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use bosun_node::metrics::{CONTENT_TYPE, Metrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

async fn metrics_page(State(metrics): State<Metrics>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode())
}

async fn healthz() -> &'static str {
    "ok"
}

/// Serve `GET /metrics` and `GET /healthz` on `listener` until `shutdown` is cancelled;
/// then finish the requests in progress and return. With a `token` (the endpoint is
/// reachable from other hosts), `/metrics` asks for it as `Authorization: Bearer …`,
/// compared in constant time; `/healthz` stays open.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    token: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let token = std::sync::Arc::new(token);
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route_layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let token = token.clone();
                async move {
                    if let Some(token) = token.as_deref() {
                        let given = request
                            .headers()
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .unwrap_or("");
                        use subtle::ConstantTimeEq;
                        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                            return (
                                axum::http::StatusCode::UNAUTHORIZED,
                                "metrics from another host need Authorization: Bearer <the HTTP token>\n",
                            )
                                .into_response();
                        }
                    }
                    next.run(request).await
                }
            },
        ))
        .route("/healthz", get(healthz))
        .with_state(metrics);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            stream.read_to_string(&mut response),
        )
        .await
        .expect("an answer")
        .unwrap();
        response
    }

    #[tokio::test]
    async fn serve_answers_metrics_and_health_and_stops_on_shutdown() {
        let metrics = Metrics::new();
        metrics.message_state("ping", "done");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics.clone(), None, stop.clone()));

        let page = get(addr, "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(
            page.to_ascii_lowercase()
                .contains(&format!("content-type: {CONTENT_TYPE}")),
            "{page}"
        );
        assert!(
            page.contains(r#"bosun_messages_total{method="ping",state="done"} 1"#),
            "{page}"
        );

        let health = get(addr, "/healthz").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("\r\n\r\nok"), "{health}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("stops on shutdown");
        result.unwrap().unwrap();
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "no longer listening"
        );
    }
}
