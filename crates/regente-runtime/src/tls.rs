//! The agent's TLS: the one place its rustls client configuration is built,
//! for the WebSocket and the package downloads alike. It trusts the system's
//! root certificates plus, for a private CA, the certificates of `--ca-file`.
//! There is no way to skip verification.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tracing::{debug, warn};

/// The client configuration for `https://` and `wss://` servers. The system's
/// roots are read only when one of `servers` speaks TLS: reading and parsing
/// them costs a plain-HTTP agent about a hundred files and their memory for
/// nothing.
pub fn client_config<'a>(
    ca_file: Option<&Path>,
    servers: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let tls_needed = servers.into_iter().any(speaks_tls);
    if tls_needed {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            debug!(%error, "a system root certificate could not be read");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        debug!(added, "system root certificates");
    }
    if let Some(path) = ca_file {
        let what = || {
            format!(
                "cannot read PEM certificates from {} (--ca-file)",
                path.display()
            )
        };
        let mut count = 0;
        for cert in CertificateDer::pem_file_iter(path).with_context(what)? {
            roots
                .add(cert.with_context(what)?)
                .with_context(|| format!("{} holds an unusable CA certificate", path.display()))?;
            count += 1;
        }
        anyhow::ensure!(
            count > 0,
            "{} (--ca-file) holds no PEM certificate",
            path.display()
        );
    }
    if tls_needed && roots.is_empty() {
        warn!("no trusted root certificate: https:// servers will be refused (give --ca-file)");
    }
    // `ring`, as the server; deprecated in rustls only for lacking the
    // post-quantum key exchange, which needs aws-lc-rs and a C build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no safe protocol version")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Says in words why a TLS connection was refused, when `error` comes from
/// the certificate check.
pub fn certificate_problem(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        let rustls_error = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()?
                .get_ref()?
                .downcast_ref::<rustls::Error>()
        });
        let rustls_error = match rustls_error {
            Some(e) => e.to_string(),
            // tungstenite keeps rustls' error inside an error of its own.
            None => match cause.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
                Some(tokio_tungstenite::tungstenite::Error::Tls(tls)) => tls.to_string(),
                _ => return None,
            },
        };
        rustls_error.contains("certificate").then(|| {
            format!(
                "the server's TLS certificate was refused ({rustls_error}): it must be valid for the \
                 server's name and signed by a trusted CA; for a private CA give its certificate \
                 with --ca-file"
            )
        })
    })
}

/// Whether a server URL is reached over TLS (`https://` or `wss://`).
pub fn speaks_tls(server: &str) -> bool {
    let scheme = server.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss")
}

/// Whether a server URL sends the runtime key unencrypted across a network:
/// plain `http://` or `ws://` to an address that is not this machine's loopback.
pub fn sends_key_in_clear(server: &str) -> bool {
    let Some(rest) = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("ws://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(host, _)| host),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => {
            !(v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
        }
        Ok(ip) => !ip.is_loopback(),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_beyond_loopback_sends_the_key_in_clear() {
        for clear in [
            "http://10.0.0.5:8080",
            "http://orchestrator.example.com",
            "ws://192.0.2.1/",
            "http://[2001:db8::1]:8080",
            "http://user@host.example:80/x",
        ] {
            assert!(sends_key_in_clear(clear), "{clear}");
        }
        for safe in [
            "https://orchestrator.example.com",
            "wss://10.0.0.5",
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]:8080",
        ] {
            assert!(!sends_key_in_clear(safe), "{safe}");
        }
    }

    #[test]
    fn only_https_and_wss_speak_tls() {
        for tls in [
            "https://orchestrator.example.com",
            "wss://10.0.0.5",
            "HTTPS://x",
        ] {
            assert!(speaks_tls(tls), "{tls}");
        }
        for plain in ["http://127.0.0.1:8080", "ws://host", "orchestrator:443", ""] {
            assert!(!speaks_tls(plain), "{plain}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = client_config(Some(&path), ["http://127.0.0.1:1"]).unwrap_err();
        assert!(format!("{error:#}").contains("empty.pem"), "{error:#}");
        let missing = dir.path().join("missing.pem");
        let error = client_config(Some(&missing), ["http://127.0.0.1:1"]).unwrap_err();
        assert!(format!("{error:#}").contains("missing.pem"), "{error:#}");
    }
}
