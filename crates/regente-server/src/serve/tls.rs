//! TLS terminated by the server itself (`--tls-cert`, `--tls-key`): rustls on
//! `ring`. The configuration is read at start, and again on SIGHUP so that a
//! renewed certificate is taken without a restart; a reload that fails keeps
//! the current one. Each handshake takes the configuration current when its
//! connection was accepted.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

pub struct ReloadableTls {
    files: TlsFiles,
    current: Mutex<Arc<rustls::ServerConfig>>,
}

impl ReloadableTls {
    /// Reads the certificate chain and the key; the error names the file and
    /// what is wrong with it.
    pub fn load(files: TlsFiles) -> anyhow::Result<ReloadableTls> {
        let config = server_config(&files)?;
        Ok(ReloadableTls {
            files,
            current: Mutex::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on failure the current configuration stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.files)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(())
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn server_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "cannot read a PEM private key from {} (--tls-key)",
            files.key.display()
        )
    })?;
    // `ring`, as for tokens; deprecated in rustls only for lacking the
    // post-quantum key exchange, which needs aws-lc-rs and a C build.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no safe protocol version")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key in {} does not fit the certificate in {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let what = || {
        format!(
            "cannot read PEM certificates from {} (--tls-cert)",
            path.display()
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .with_context(what)?
        .collect::<Result<Vec<_>, _>>()
        .with_context(what)?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} (--tls-cert) holds no PEM certificate",
        path.display()
    );
    Ok(chain)
}
