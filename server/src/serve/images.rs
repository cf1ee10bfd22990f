//! `GET /images/vmlinuz` and `GET /images/initrd.img`: the install kernel and initramfs that
//! the iPXE scripts of [`super::boot`] point at, streamed from `--images-dir` (the output
//! directory of `rdeploy-initrd build`); and `GET /agent`, the static `rdeploy-agent` a
//! deployed host fetches to upgrade itself (`curl -o /usr/sbin/rdeploy-agent URL/agent`).
//!
//! Files are streamed, never read whole; `HEAD`, `Range` (iPXE and curl resume with it),
//! `If-Modified-Since` and `Last-Modified` are those of tower-http's `ServeFile`. Only these two
//! names are served: nothing else of the directory is reachable.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::ApiError;
use super::http::extract::UrlPath;
use super::AppState;

/// The files served, by URL name.
pub const IMAGES: &[&str] = &["vmlinuz", "initrd.img"];

/// `GET|HEAD /images/{file}`.
pub async fn image(
    State(app): State<AppState>,
    UrlPath(file): UrlPath<String>,
    req: Request,
) -> Result<Response, ApiError> {
    if !IMAGES.contains(&file.as_str()) {
        return Err(ApiError::not_found(
            "no_such_image",
            format!("no image {file:?}: the images are /images/vmlinuz and /images/initrd.img"),
        ));
    }
    let Some(dir) = &app.core.boot().config.images_dir else {
        return Err(ApiError::not_found(
            "no_images",
            "this server serves no boot images: start it with --images-dir DIR, DIR holding vmlinuz and initrd.img (rdeploy-initrd build --out DIR)",
        ));
    };
    let path = dir.join(&file);
    if !path.is_file() {
        return Err(ApiError::not_found(
            "no_such_image",
            format!(
                "{} does not exist: build it with rdeploy-initrd build --kernel /boot/vmlinuz-VERSION --agent rdeploy-agent --out {}",
                path.display(),
                dir.display()
            ),
        ));
    }
    match ServeFile::new(&path).oneshot(req).await {
        Ok(resp) => Ok(resp.map(Body::new).into_response()),
        Err(e) => Err(ApiError::internal(format!("{}: {e}", path.display()))),
    }
}

/// `rdeploy-agent` in the directory of the running `rdeploy`, if it is there.
pub fn agent_beside_server() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let agent = exe.parent()?.join("rdeploy-agent");
    agent.is_file().then_some(agent)
}

/// `GET|HEAD /agent`: the agent binary (`--agent-binary`, or the one beside the server).
pub async fn agent(State(app): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some(path) = &app.core.boot().config.agent_binary else {
        return Err(ApiError::not_found(
            "no_agent",
            "this server has no agent binary to serve: start it with --agent-binary FILE (scripts/build-boot-images builds a static one: target/static/x86_64-unknown-linux-gnu/release/rdeploy-agent), or put rdeploy-agent beside the rdeploy binary",
        ));
    };
    if !path.is_file() {
        return Err(ApiError::not_found(
            "no_agent",
            format!("{} (the agent binary) is gone", path.display()),
        ));
    }
    match ServeFile::new(path).oneshot(req).await {
        Ok(resp) => {
            let mut resp = resp.map(Body::new).into_response();
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/octet-stream"),
            );
            Ok(resp)
        }
        Err(e) => Err(ApiError::internal(format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{app, boot, demo_state};
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;

    fn router(
        images: Option<std::path::PathBuf>,
        tmp: &std::path::Path,
    ) -> anyhow::Result<axum::Router> {
        let mut boot = boot::BootConfig::new("http://127.0.0.1:1");
        boot.images_dir = images;
        let state = demo_state(tmp, boot)?;
        Ok(app(state))
    }

    async fn body(resp: axum::response::Response) -> anyhow::Result<Vec<u8>> {
        Ok(axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await?
            .to_vec())
    }

    #[tokio::test]
    async fn serves_whole_files_ranges_and_heads() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let images = tmp.path().join("images");
        std::fs::create_dir_all(&images)?;
        let kernel: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(images.join("vmlinuz"), &kernel)?;
        std::fs::write(images.join("secret"), b"not served")?;
        let r = router(Some(images), tmp.path())?;

        let resp = r
            .clone()
            .oneshot(Request::get("/images/vmlinuz").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await?, kernel);

        let resp = r
            .clone()
            .oneshot(
                Request::get("/images/vmlinuz")
                    .header(header::RANGE, "bytes=1000-1999")
                    .body(Body::empty())?,
            )
            .await?;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(resp).await?, &kernel[1000..2000]);

        let resp = r
            .clone()
            .oneshot(Request::head("/images/vmlinuz").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()),
            Some("100000")
        );
        assert!(body(resp).await?.is_empty());

        // Not built yet: the answer says how to build it.
        let resp = r
            .clone()
            .oneshot(Request::get("/images/initrd.img").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let text = String::from_utf8(body(resp).await?)?;
        assert!(text.contains("rdeploy-initrd build"), "{text}");

        // Other names of the directory are not reachable.
        for uri in ["/images/secret", "/images/..%2Fsecret", "/images/"] {
            let resp = r
                .clone()
                .oneshot(Request::get(uri).body(Body::empty())?)
                .await?;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{uri}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn without_an_images_dir_the_answer_says_which_flag() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = router(None, tmp.path())?;
        let resp = r
            .oneshot(Request::get("/images/vmlinuz").body(Body::empty())?)
            .await?;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let text = String::from_utf8(body(resp).await?)?;
        assert!(text.contains("--images-dir"), "{text}");
        Ok(())
    }
}
