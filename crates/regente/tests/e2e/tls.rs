//! TLS: `regente serve --tls-cert/--tls-key` with a private CA made here with
//! openssl; an agent that trusts the CA (`--ca-file`) runs a robot over
//! `wss://` and `https://`; one that does not says why in its log; a new
//! certificate is taken on SIGHUP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A CA, and a certificate for 127.0.0.1 signed by it, as PEM files in a
/// temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().expect("a directory for certificates"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA named `name`: `name.crt`, `name.key`.
    fn ca(&self, name: &str) -> PathBuf {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
        self.path(&format!("{name}.crt"))
    }

    /// A server certificate for 127.0.0.1 signed by the CA `ca`: `(cert, key)`.
    fn server_cert(&self, name: &str, ca: &str) -> (PathBuf, PathBuf) {
        let (key, csr, cert) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        std::fs::write(
            self.path(&format!("{name}.ext")),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &cert,
            ],
        );
        (self.path(&cert), self.path(&key))
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the tests make their certificates with it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_agent_trusting_a_private_ca_runs_a_robot_over_wss() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server_cert("server", "ca");
    let server = ServerOptions::new()
        .tls(&cert, &key, &std::fs::read(&ca).unwrap())
        .start();
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    // Plain HTTP on the TLS port gets no answer a client could take for one.
    let plain = Api::new(&server.base.replace("https://", "http://"));
    assert!(plain.req("GET", "/healthz").try_send().is_err());

    let admin = server.admin_token();
    let (runtime, runtime_key) = server.create_runtime(&admin, "tls-desk");
    let robot = upload_shell_robot(&server, &admin, "tls-hello", "echo over tls", "");
    let agent = AgentOptions::for_server(&server, &runtime_key, 1)
        .ca_file(&ca)
        .start();
    agent.wait_welcomed(1, Duration::from_secs(30));
    assert!(!agent.stderr().contains("INSECURE"), "{}", agent.stderr());
    let done = run_to_the_end(&server, &admin, &runtime, &robot);
    assert!(messages(&done).iter().any(|m| m == "over tls"), "{done}");
}

#[test]
fn an_agent_refuses_a_certificate_of_another_ca_and_says_why() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let other_ca = pki.ca("other-ca");
    let (cert, key) = pki.server_cert("server", "ca");
    let server = ServerOptions::new()
        .tls(&cert, &key, &std::fs::read(&ca).unwrap())
        .start();
    let admin = server.admin_token();
    let (runtime, runtime_key) = server.create_runtime(&admin, "wary-desk");
    let agent = AgentOptions::for_server(&server, &runtime_key, 1)
        .ca_file(&other_ca)
        .start();
    agent.wait_log(
        "the server's TLS certificate was refused",
        Duration::from_secs(30),
    );
    let log = agent.stderr();
    assert!(
        log.contains("--ca-file"),
        "the error says what to do: {}",
        tail(&log, 10)
    );
    assert_eq!(agent.welcomes(), 0);
    assert!(!server.runtime_online(&admin, &runtime));
}

#[test]
fn a_new_certificate_is_taken_on_sighup_and_a_bad_one_is_not() {
    let pki = Pki::new();
    let first_ca = pki.ca("first-ca");
    let second_ca = pki.ca("second-ca");
    let (cert, key) = pki.server_cert("first", "first-ca");
    let (live_cert, live_key) = (pki.path("live.crt"), pki.path("live.key"));
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let server = ServerOptions::new()
        .tls(&live_cert, &live_key, &std::fs::read(&first_ca).unwrap())
        .start();
    server.req("GET", "/healthz").send().expect(200);
    let trusting_second = |base: &str| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&second_ca).unwrap()).unwrap(),
            )
            .build()
            .unwrap()
            .get(format!("{base}/healthz"))
            .send()
    };
    assert!(
        trusting_second(&server.base).is_err(),
        "the first certificate is in use"
    );

    // A broken pair on SIGHUP: logged, and the current certificate stays.
    std::fs::write(&live_key, "not a key").unwrap();
    signal(server.pid(), "HUP");
    wait_until(
        Duration::from_secs(30),
        "the failed reload in the log",
        || {
            server
                .stderr()
                .contains("cannot reload the TLS certificate")
                .then_some(())
        },
    );
    server.req("GET", "/healthz").send().expect(200);

    let (cert, key) = pki.server_cert("second", "second-ca");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    signal(server.pid(), "HUP");
    wait_for(
        Duration::from_secs(30),
        "the second certificate in use",
        || {
            trusting_second(&server.base)
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        },
    );
}

#[test]
fn the_command_line_signs_in_over_https_trusting_a_private_ca() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let (cert, key) = pki.server_cert("server", "ca");
    let server = ServerOptions::new()
        .tls(&cert, &key, &std::fs::read(&ca).unwrap())
        .start();
    let config = tempfile::tempdir().expect("a config folder");
    let login = |ca_file: Option<&Path>| {
        let mut command = regente_command(&regente_binary());
        command
            .args(["login", "--server", &server.base, "--username", ADMIN_USER])
            .env("REGENTE_CONFIG_DIR", config.path().join("regente"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Some(ca_file) = ca_file {
            command.arg("--ca-file").arg(ca_file);
        }
        let mut child = command.spawn().expect("regente runs");
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            format!("{ADMIN_PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        child.wait_with_output().expect("regente ends")
    };
    let refused = login(None);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot reach"), "{said}");
    let trusted = login(Some(&ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
}
