//! Robot packages built in memory, and the usual setup of a test: an admin, a
//! runtime and a robot.

use std::io::{Cursor, Write};

use serde_json::{json, Value};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::client::Api;

/// A zip of the given files, deflated, in order.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = deflated();
    for (name, bytes) in files {
        writer.start_file(*name, options).expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip finish").into_inner()
}

pub fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// A robot package: `robot.toml` at the root plus `extra` files, deflated.
pub fn robot_zip(manifest: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(&str, &[u8])> = vec![("robot.toml", manifest.as_bytes())];
    files.extend_from_slice(extra);
    zip_of(&files)
}

/// A robot package: `robot.toml` with `command = ["sh", "run.sh"]` plus the
/// `extra_manifest_toml` lines, and `run.sh` holding `script`.
pub fn shell_robot(name: &str, script: &str, extra_manifest_toml: &str) -> Vec<u8> {
    let manifest =
        format!("name = \"{name}\"\ncommand = [\"sh\", \"run.sh\"]\n{extra_manifest_toml}\n");
    robot_zip(&manifest, &[("run.sh", script.as_bytes())])
}

/// Uploads a shell robot and answers its id.
pub fn upload_shell_robot(
    api: &Api,
    token: &str,
    name: &str,
    script: &str,
    extra_manifest_toml: &str,
) -> String {
    api.upload_robot(token, shell_robot(name, script, extra_manifest_toml))["id"]
        .as_str()
        .expect("robot id")
        .to_owned()
}

/// A manifest for a robot with two variables with defaults.
pub fn manifest(name: &str) -> String {
    format!(
        r#"name = "{name}"
command = ["python3", "main.py"]
timeout_seconds = 600

[[variables]]
name = "CNPJ"
type = "text"
default = "00.000.000/0001-00"

[[variables]]
name = "LIMIT"
type = "number"
default = 10
"#
    )
}

/// Uploads a robot with [`manifest`] and answers its id.
pub fn robot(api: &Api, token: &str, name: &str) -> String {
    let zip = robot_zip(&manifest(name), &[("main.py", b"print('hi')\n")]);
    api.upload_robot(token, zip)["id"]
        .as_str()
        .expect("robot id")
        .to_owned()
}

/// A run body with text variables.
pub fn text_vars(vars: &[(&str, &str)]) -> Value {
    json!({
        "variables": vars
            .iter()
            .map(|(name, value)| json!({"name": name, "type": "text", "value": value}))
            .collect::<Vec<_>>()
    })
}

/// The standard setup: an admin token, a runtime and a robot.
pub struct Fixture {
    pub admin: String,
    pub runtime: String,
    pub robot: String,
}

pub fn fixture(api: &Api) -> Fixture {
    let admin = api.admin_token();
    let (runtime, _key) = api.create_runtime(&admin, "rt-1");
    let robot = robot(api, &admin, "consulta-cnpj");
    Fixture {
        admin,
        runtime,
        robot,
    }
}

/// The id of a user of the caller's organisation, by name.
pub fn user_id(api: &Api, token: &str, username: &str) -> String {
    let users = api.get("/api/admin/users", token).expect(200).json();
    users
        .as_array()
        .expect("a list")
        .iter()
        .find(|u| u["username"] == username)
        .and_then(|u| u["id"].as_str())
        .unwrap_or_else(|| panic!("no user {username} in {users}"))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn a_shell_robot_holds_its_manifest_and_script() {
        let zip = shell_robot("hello", "echo hi\n", "retries = 1");
        let mut archive = zip::ZipArchive::new(Cursor::new(zip)).expect("a zip");
        let mut read = |name: &str| {
            let mut text = String::new();
            archive
                .by_name(name)
                .expect(name)
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!(
            read("robot.toml"),
            "name = \"hello\"\ncommand = [\"sh\", \"run.sh\"]\nretries = 1\n"
        );
        assert_eq!(read("run.sh"), "echo hi\n");
    }
}
