//! Everything around the figures, through the test kit: the server and agent
//! processes, signing in, robots, runtimes, waiting for a result. The kit
//! panics on a wrong answer; [`caught`] turns that into the benchmark's error.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use regente_testkit::{
    poll, result_of, robot_zip, tail, wait_for_every, AgentOptions, ServerOptions, TestAgent,
    TestServer,
};
use serde_json::{json, Value};

/// Runs a step; a panic (the test kit's way of saying that an answer was
/// wrong) becomes an error with its message.
pub fn caught<T>(step: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(step)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            bail!("{message}")
        }
    }
}

/// Starts `regente serve` as `options` say and waits until it answers
/// `/healthz`; answers it with the time from its spawn to that first 200.
pub fn start_server(options: ServerOptions) -> anyhow::Result<(TestServer, Duration)> {
    caught(|| {
        let server = options.start();
        let listening = Instant::now();
        poll(Duration::from_secs(60), Duration::from_millis(1), || {
            let reply = server.req("GET", "/healthz").try_send().ok()?;
            (reply.status == 200).then_some(())
        })
        .context("the server did not answer /healthz within 60 s")?;
        let to_healthy = server.to_listening() + listening.elapsed();
        Ok((server, to_healthy))
    })
}

/// A server of the benchmark, with the tokens it is driven with.
pub struct Served {
    pub server: TestServer,
    /// `Authorization` value of the admin.
    pub admin: String,
    /// `Authorization` value of an integration user: runs and result reads.
    pub token: String,
}

impl Served {
    /// Starts a server (see [`start_server`]) and signs in.
    pub fn start(options: ServerOptions) -> anyhow::Result<Served> {
        Served::sign_in(start_server(options)?.0)
    }

    /// Signs in as the admin and as an integration user (created unless an
    /// earlier run on the same PostgreSQL store made it): two logins and a
    /// user, each an argon2id hash.
    pub fn sign_in(server: TestServer) -> anyhow::Result<Served> {
        caught(|| {
            let admin = server.admin_token();
            let (username, password) = ("bench@example.com", "bench-integration-password");
            let created = server
                .req("POST", "/api/admin/users")
                .auth(&admin)
                .json(&json!({"username": username, "password": password, "role": "integration"}))
                .send();
            if created.status != 409 {
                created.expect(201);
            }
            let token = server.login(username, password);
            Ok(Served {
                server,
                admin,
                token,
            })
        })
    }

    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Fails when the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.server.exited() {
            bail!(
                "the server exited ({status}); its log (tail):\n{}",
                tail(&self.server.stderr(), 15)
            );
        }
        Ok(())
    }

    /// SIGTERM, and a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        caught(|| {
            self.server.stop();
            Ok(())
        })
    }

    /// Uploads a robot package with this `robot.toml`; answers the robot's id.
    pub fn upload_robot(&self, manifest: &str) -> anyhow::Result<String> {
        caught(|| {
            let body = self
                .server
                .upload_robot(&self.admin, robot_zip(manifest, &[]));
            Ok(body["id"].as_str().context("a robot id")?.to_owned())
        })
    }

    /// Creates a runtime; answers its id and key.
    pub fn create_runtime(&self, name: &str, slots: u32) -> anyhow::Result<(String, String)> {
        caught(|| {
            Ok(self
                .server
                .create_runtime_with_slots(&self.admin, name, slots))
        })
    }

    /// Queues a run with no body; answers the execution id.
    pub fn run(&self, runtime: &str, robot: &str) -> anyhow::Result<String> {
        caught(|| Ok(self.server.queue(&self.token, runtime, robot, None)))
    }

    /// The admin API's view of an execution.
    pub fn execution(&self, id: &str) -> anyhow::Result<Value> {
        caught(|| Ok(self.server.execution(&self.admin, id)))
    }

    /// `GET /api/admin/executions?QUERY`.
    pub fn executions(&self, query: &str) -> anyhow::Result<Value> {
        caught(|| {
            let path = format!("/api/admin/executions?{query}");
            Ok(self.server.get(&path, &self.admin).expect(200).json())
        })
    }

    /// Every execution the admin listing gives for `QUERY`, all pages.
    pub fn all_executions(&self, query: &str) -> anyhow::Result<Vec<Value>> {
        caught(|| {
            Ok(self
                .server
                .all_executions(&self.admin, &format!("&{query}")))
        })
    }

    /// Waits until the runtime is online.
    pub fn wait_online(&self, runtime: &str, deadline: Duration) -> anyhow::Result<()> {
        caught(|| {
            let what = format!("runtime {runtime} to come online");
            wait_for_every(Duration::from_millis(20), deadline, &what, || {
                if self.server.runtime_online(&self.admin, runtime) {
                    Ok(())
                } else {
                    Err("offline")
                }
            });
            Ok(())
        })
    }

    /// Polls the result every `every` until the execution has ended; answers it.
    pub fn wait_result(
        &self,
        runtime: &str,
        id: &str,
        every: Duration,
        deadline: Duration,
    ) -> anyhow::Result<Value> {
        self.wait_result_where(runtime, id, every, deadline, "to end", |result| {
            !matches!(result["status"].as_str(), Some("PENDENT" | "RUNNING"))
        })
    }

    /// Polls the result every `every` until `seen` holds of it; answers it.
    pub fn wait_result_where(
        &self,
        runtime: &str,
        id: &str,
        every: Duration,
        deadline: Duration,
        what: &str,
        seen: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        caught(|| {
            let what = format!("execution {id} {what}");
            Ok(wait_for_every(every, deadline, &what, || {
                let result = result_of(&self.server, &self.token, runtime, id);
                if seen(&result) {
                    Ok(result)
                } else {
                    Err(result["status"].clone())
                }
            }))
        })
    }

    /// Cancels an execution through the Integration API.
    pub fn cancel(&self, runtime: &str, id: &str) -> anyhow::Result<()> {
        caught(|| {
            self.server.delete(&self.token, runtime, id).expect(200);
            Ok(())
        })
    }

    /// Starts `regente runtime` for this server, its log in `log`.
    pub fn start_agent(
        &self,
        bin: &Path,
        key: &str,
        work_dir: &Path,
        slots: u32,
        log: &Path,
    ) -> anyhow::Result<TestAgent> {
        caught(|| {
            Ok(AgentOptions::for_server(&self.server, key, slots)
                .binary(bin)
                .work_dir(work_dir)
                .log_file(log)
                .start())
        })
    }
}
