//! `robot.toml`, the manifest every robot package carries.
//!
//! ```toml
//! name = "consulta-cnpj"
//! command = ["python3", "main.py"]
//! timeout_seconds = 600          # optional; no limit when absent
//! retries = 0                    # optional; runs again after a lost runtime only when > 0
//! [[variables]]
//! name = "CNPJ"
//! type = "text"
//! default = "00.000.000/0001-00" # optional; without it the variable is required
//! secret = false                 # optional; true: sealed when stored, masked in logs
//! [[credentials]]                # handed out from the vault at start, never stored with the run
//! name = "erp"
//! fields = ["username", "password"] # optional; all of the credential's when absent
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::variables::{VariableDeclaration, VariableError};

/// Longest timeout a manifest may ask for: one week.
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
pub const MAX_RETRIES: u32 = 10;
const MAX_NAME_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct RobotManifest {
    pub name: String,
    /// Program and arguments, run without a shell from the unpacked package.
    pub command: Vec<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub variables: Vec<VariableDeclaration>,
    /// Names of the variables declared `secret = true`.
    pub secret_variables: BTreeSet<String>,
    /// The vault's credentials the robot needs, each once.
    pub credentials: Vec<CredentialNeed>,
}

/// A credential a robot declares it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialNeed {
    pub name: String,
    /// The fields it needs; `None`: every field of the credential.
    pub fields: Option<Vec<String>>,
}

/// The file as written; [`RobotManifest::parse`] turns it into the checked form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    command: Vec<String>,
    timeout_seconds: Option<u64>,
    retries: Option<u32>,
    #[serde(default)]
    variables: Vec<RawVariable>,
    #[serde(default)]
    credentials: Vec<RawCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    name: String,
    fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    default: Option<toml::Value>,
    #[serde(default)]
    secret: bool,
}

impl RobotManifest {
    pub fn parse(text: &str) -> Result<RobotManifest, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| ManifestError::Syntax(e.message().to_owned()))?;
        let name_ok = raw.name.len() <= MAX_NAME_LEN
            && raw.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(ManifestError::Invalid(format!(
                "name {:?} is invalid: use up to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', starting with a letter or digit",
                raw.name
            )));
        }
        if raw.command.is_empty() || raw.command[0].trim().is_empty() {
            return Err(ManifestError::Invalid(
                "command must name a program: command = [\"program\", \"arg\", ...]".into(),
            ));
        }
        if raw.command.iter().any(|part| part.contains('\0')) {
            return Err(ManifestError::Invalid(
                "command must not contain NUL characters".into(),
            ));
        }
        let timeout = match raw.timeout_seconds {
            None => None,
            Some(seconds) if (1..=MAX_TIMEOUT_SECONDS).contains(&seconds) => {
                Some(Duration::from_secs(seconds))
            }
            Some(seconds) => {
                return Err(ManifestError::Invalid(format!(
                    "timeout_seconds = {seconds} is out of range: use 1 to {MAX_TIMEOUT_SECONDS}"
                )))
            }
        };
        let retries = raw.retries.unwrap_or(0);
        if retries > MAX_RETRIES {
            return Err(ManifestError::Invalid(format!(
                "retries = {retries} is out of range: use 0 to {MAX_RETRIES}"
            )));
        }
        let mut variables: Vec<VariableDeclaration> = Vec::with_capacity(raw.variables.len());
        let mut secret_variables = BTreeSet::new();
        for raw_variable in raw.variables {
            if raw_variable.secret {
                secret_variables.insert(raw_variable.name.clone());
            }
            let default = raw_variable
                .default
                .map(|value| serde_json::to_value(value).expect("TOML values are JSON values"));
            let declaration = VariableDeclaration::parse(
                &raw_variable.name,
                &raw_variable.kind,
                default.as_ref(),
            )?;
            if variables.iter().any(|d| d.name == declaration.name) {
                return Err(ManifestError::Invalid(format!(
                    "variable {:?} is declared twice",
                    declaration.name.as_str()
                )));
            }
            variables.push(declaration);
        }
        let mut credentials: Vec<CredentialNeed> = Vec::with_capacity(raw.credentials.len());
        for raw_credential in raw.credentials {
            if !is_credential_name(&raw_credential.name) {
                return Err(ManifestError::Invalid(format!(
                    "credential name {:?} is invalid: {CREDENTIAL_NAME_RULE}",
                    raw_credential.name
                )));
            }
            if let Some(field) = raw_credential
                .fields
                .iter()
                .flatten()
                .find(|field| !is_credential_name(field))
            {
                return Err(ManifestError::Invalid(format!(
                    "credential {:?}: field name {field:?} is invalid: {CREDENTIAL_NAME_RULE}",
                    raw_credential.name
                )));
            }
            if credentials.iter().any(|c| c.name == raw_credential.name) {
                return Err(ManifestError::Invalid(format!(
                    "credential {:?} is declared twice",
                    raw_credential.name
                )));
            }
            credentials.push(CredentialNeed {
                name: raw_credential.name,
                fields: raw_credential.fields,
            });
        }
        Ok(RobotManifest {
            name: raw.name,
            command: raw.command,
            timeout,
            retries,
            variables,
            secret_variables,
            credentials,
        })
    }
}

/// What a credential's name and its fields' names may be.
pub const CREDENTIAL_NAME_RULE: &str =
    "use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit";

/// Whether `name` follows [`CREDENTIAL_NAME_RULE`] (credentials and their fields).
pub fn is_credential_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("robot.toml is not valid TOML for a manifest: {0}")]
    Syntax(String),
    #[error("robot.toml: {0}")]
    Invalid(String),
    #[error("robot.toml: {0}")]
    Variable(#[from] VariableError),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::variables::VariableType;

    #[test]
    fn credentials_and_secret_variables_are_declared() {
        let manifest = RobotManifest::parse(
            r#"
            name = "erp-login"
            command = ["sh", "run.sh"]
            [[variables]]
            name = "TOKEN"
            type = "text"
            secret = true
            [[variables]]
            name = "CITY"
            type = "text"
            [[credentials]]
            name = "erp"
            [[credentials]]
            name = "bank.main"
            fields = ["password"]
            "#,
        )
        .unwrap();
        assert_eq!(
            manifest.secret_variables.iter().collect::<Vec<_>>(),
            ["TOKEN"]
        );
        assert_eq!(
            manifest.credentials,
            vec![
                CredentialNeed {
                    name: "erp".into(),
                    fields: None
                },
                CredentialNeed {
                    name: "bank.main".into(),
                    fields: Some(vec!["password".into()])
                },
            ]
        );
        for (bad, says) in [
            (
                "[[credentials]]\nname = \"erp\"\n[[credentials]]\nname = \"erp\"",
                "declared twice",
            ),
            ("[[credentials]]\nname = \"../x\"", "credential name"),
            (
                "[[credentials]]\nname = \"erp\"\nfields = [\"\"]",
                "field name",
            ),
            (
                "[[credentials]]\nname = \"erp\"\nvalue = \"x\"",
                "unknown field",
            ),
        ] {
            let text = format!("name = \"r\"\ncommand = [\"x\"]\n{bad}");
            let error = RobotManifest::parse(&text).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let manifest = RobotManifest::parse(
            r#"
            name = "consulta-cnpj"
            command = ["python3", "main.py"]
            timeout_seconds = 600
            [[variables]]
            name = "CNPJ"
            type = "text"
            default = "00.000.000/0001-00"
            [[variables]]
            name = "FILTER"
            type = "json"
            default = { uf = "SP", limit = 3 }
            "#,
        )
        .unwrap();
        assert_eq!(manifest.name, "consulta-cnpj");
        assert_eq!(manifest.command, ["python3", "main.py"]);
        assert_eq!(manifest.timeout, Some(Duration::from_secs(600)));
        assert_eq!(manifest.retries, 0);
        assert_eq!(manifest.variables[0].kind, VariableType::Text);
        assert_eq!(
            manifest.variables[1].default.as_ref().unwrap().as_json(),
            &json!({"uf": "SP", "limit": 3})
        );
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let check = |text: &str, expected: &str| {
            let message = RobotManifest::parse(text).unwrap_err().to_string();
            assert!(message.contains(expected), "{text:?}: {message}");
        };
        check("name = ", "TOML");
        check("command = [\"x\"]", "name");
        check("name = \"../x\"\ncommand = [\"x\"]", "name \"../x\"");
        check("name = \"a\"\ncommand = []", "command");
        check(
            "name = \"a\"\ncommand = [\"x\"]\ntimeout_seconds = 0",
            "timeout_seconds",
        );
        check("name = \"a\"\ncommand = [\"x\"]\ntimeout = 5", "timeout");
        check("name = \"a\"\ncommand = [\"x\"]\nretries = 99", "retries");
        check(
            "name = \"a\"\ncommand = [\"x\"]\n[[variables]]\nname = \"N\"\ntype = \"number\"\ndefault = \"x\"",
            "\"N\"",
        );
        check(
            "name = \"a\"\ncommand = [\"x\"]\n[[variables]]\nname = \"N\"\ntype = \"text\"\n[[variables]]\nname = \"N\"\ntype = \"text\"",
            "twice",
        );
    }
}
