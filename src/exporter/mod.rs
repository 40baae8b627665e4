//! Exporters firedrill serves from its own image in place of an official
//! one that cannot run here, with the official one's names, labels and
//! semantics, from real measurements: cAdvisor's container metrics read
//! through the Docker API; dcgm-exporter's GPU metrics read through NVML.

pub mod cadvisor;
pub mod dcgm;

/// Serves an exporter's `app` on `listen` until Ctrl-C or SIGTERM; `what`
/// says which, in the log.
async fn serve_app(listen: &str, app: axum::Router, what: String) -> crate::error::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("{what} on {listen}");
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::util::interrupted())
        .await?;
    Ok(())
}
