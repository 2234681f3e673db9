//! The server built in the test's own process: for tests of the API's shapes,
//! which need no kill, restart or log, it saves a process start per test.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use regente_server::{Server, ServerConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;

use crate::client::Api;
use crate::postgres::TestDatabase;
use crate::server::{ADMIN_PASSWORD, ADMIN_USER, JWT_SECRET, MASTER_KEY};

/// `regente_server::Server` on 127.0.0.1 with a random port, a temporary data
/// directory (and a PostgreSQL database of its own when the suite runs on
/// PostgreSQL), the standard admin and signing secret, served by a runtime on a
/// thread of its own; stopped when dropped. It dereferences to its [`Api`].
pub struct InProcessServer {
    api: Api,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
    _data_dir: TempDir,
    /// Dropped after the server has stopped.
    database: Option<TestDatabase>,
}

impl Deref for InProcessServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl InProcessServer {
    pub fn start() -> InProcessServer {
        InProcessServer::start_with(|_| {})
    }

    /// Starts a server whose configuration `configure` changes first.
    pub fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> InProcessServer {
        let data_dir = tempfile::Builder::new()
            .prefix("regente-in-process-")
            .tempdir()
            .expect("a temporary data directory");
        let database = TestDatabase::for_suite();
        let mut config = ServerConfig::new(data_dir.path().join("data"));
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.database_url = database.as_ref().map(|d| d.url.clone());
        config.admin_username = ADMIN_USER.into();
        config.admin_password = Some(ADMIN_PASSWORD.into());
        config.jwt_secret = Some(JWT_SECRET.into());
        config.master_key = Some(regente_server::config::SecretText::new(MASTER_KEY.into()));
        configure(&mut config);
        let (ready_tx, ready) = mpsc::channel::<Result<SocketAddr, String>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = std::thread::Builder::new()
            .name("in-process-server".into())
            .spawn(move || serve(config, ready_tx, stopped))
            .expect("a thread for the server");
        let addr = match ready.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addr)) => addr,
            Ok(Err(why)) => panic!("the in-process server did not start: {why}"),
            Err(why) => panic!("the in-process server did not start: {why:?}"),
        };
        InProcessServer {
            api: Api::new(&format!("http://{addr}")),
            stop: Some(stop),
            serving: Some(serving),
            _data_dir: data_dir,
            database,
        }
    }
}

/// Builds the server, says where it listens (or why it cannot), and serves
/// until told to stop.
fn serve(
    config: ServerConfig,
    ready: mpsc::Sender<Result<SocketAddr, String>>,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the server");
    runtime.block_on(async move {
        let server = match Server::build(config).await {
            Ok(server) => server,
            Err(e) => {
                let _ = ready.send(Err(format!("{e:#}")));
                return;
            }
        };
        let _ = ready.send(Ok(server.local_addr()));
        let stop = async {
            let _ = stopped.await;
        };
        if let Err(e) = server.run(stop).await {
            eprintln!("the in-process server failed: {e:#}");
        }
    });
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.join();
        }
        drop(self.database.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::raw_send;
    use crate::shape::assert_error;

    #[test]
    fn an_in_process_server_answers_logins_and_the_error_shape() {
        let server = InProcessServer::start_with(|config| config.max_package_bytes = 1000);
        assert_eq!(
            server.req("GET", "/healthz").send().expect(200).text(),
            "ok"
        );
        let admin = server.admin_token();
        let (id, key) = server.create_runtime(&admin, "rt-kit");
        assert_eq!(key.len(), 40);
        assert!(!server.runtime_online(&admin, &id));
        assert_error(
            &server.upload_robot_reply(&admin, vec![0; 2000]),
            413,
            "/api/admin/robots",
        );
        assert_error(
            &server.login_v1_reply(ADMIN_USER, "wrong"),
            401,
            "/api/user/auth",
        );
    }

    #[test]
    fn a_raw_request_reads_an_answer_given_before_the_body() {
        let server = InProcessServer::start();
        let path = "/api/integration/v2/run/0123456789abcdef/0123456789abcdef";
        let headers: [(&str, &[u8]); 2] = [
            ("Authorization", b"Bearer bad"),
            ("Content-Type", b"application/json"),
        ];
        let reply =
            raw_send(&server, "POST", path, &headers, vec![b' '; 4 << 20]).expect("an answer");
        assert_error(&reply, 401, path);
    }
}
