//! The console's stylesheet and scripts, compiled into the binary. Their URLs
//! carry a hash of their content, so browsers may keep them for a year and
//! still get a new one after an upgrade.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/console.js"),
    },
    // htmx 2.0.11 (BSD Zero Clause), the minified file of its npm package.
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/htmx-2.0.11.min.js"),
    },
];

/// The first 12 hex digits of the hash of every asset together.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hash = Sha256::new();
        for asset in ASSETS {
            hash.update(asset.name.as_bytes());
            hash.update(asset.body);
        }
        hex::encode(hash.finalize())[..12].to_owned()
    })
}

/// The URL of an asset of this build.
pub fn url(name: &str) -> String {
    format!("/assets/{}/{name}", version())
}

pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return super::pages::not_found_page();
    };
    // An old version's URL still answers, but is not to be kept.
    let cache = if version == self::version() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
        ],
        asset.body,
    )
        .into_response()
}
