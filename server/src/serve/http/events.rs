//! `GET /events`: node changes as server-sent events (`text/event-stream`), for the console
//! and for scripts (`curl -N http://SERVER/events`).
//!
//! Each change is one `event: node` whose `data:` is the node's short form as `GET /nodes`
//! lists it, plus `seq` (the change's number since the server started). A listener that fell
//! more than `events::CAPACITY` changes behind gets `event: lagged` with the number missed
//! (re-read `GET /nodes` then). A comment line every 15 seconds keeps proxies from closing
//! an idle stream. Read like `GET /nodes`: where that needs the read token, so does this
//! (`401 read_token_required`), or the console's session.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::super::error::ApiError;
use super::super::AppState;
use super::extract::Cred;

/// `GET /events`.
pub async fn events(State(app): State<AppState>, Cred(cred): Cred) -> Result<Response, ApiError> {
    app.core.authorize_read(&cred)?;
    let rx = app.core.subscribe();
    let changes = stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(change) => match serde_json::to_string(&change) {
                Ok(json) => Event::default().event("node").data(json),
                Err(_) => Event::default().comment("unserializable change"),
            },
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    // A first comment so a client knows at once the stream is open.
    let hello = stream::once(async { Ok(Event::default().comment("rdeploy node changes")) });
    let all = futures_util::StreamExt::chain(hello, changes);
    Ok(Sse::new(all)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
