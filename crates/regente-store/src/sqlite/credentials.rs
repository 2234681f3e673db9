//! The credentials vault on SQLite: credentials, their sealed values, key checks.

use async_trait::async_trait;
use rusqlite::{params, Connection};
use serde_json::Value;

use super::audit::{delete_audited, insert_audit};
use super::{all, change, insert, one, other, SqliteStore};
use crate::credentials::{sealed_variable_prefix, SEALED_VARIABLE_MARK};
use crate::rows::{
    credential_from, credentials_with_fields, robots_text, sealed_value_from,
    sealed_variables_from, stored_value_from, vault_key_from, CREDENTIAL_COLUMNS,
    SEALED_VALUE_COLUMNS,
};
use crate::{
    AuditEntry, Credential, CredentialStore, CredentialWrite, Error, Result, SealedCredential,
    SealedValue, SealedVariables, StoredValue, VaultKey,
};

fn insert_values(conn: &Connection, write: &CredentialWrite) -> Result<()> {
    for value in &write.values {
        change(
            conn,
            "INSERT INTO credential_values \
             (credential_id, organization_id, version, field, key_id, nonce, ciphertext) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                write.id,
                write.organization_id,
                write.version,
                value.field,
                value.key_id,
                value.nonce,
                value.ciphertext
            ],
        )?;
    }
    Ok(())
}

fn create(conn: &Connection, new: &CredentialWrite) -> Result<()> {
    let taken = one(
        conn,
        "SELECT 1 AS taken FROM credentials WHERE organization_id = ?1 AND name = ?2",
        [&new.organization_id, &new.name],
        |_| Ok(()),
    )?;
    if taken.is_some() {
        return Err(Error::Conflict("a credential with this name"));
    }
    insert(
        conn,
        "INSERT INTO credentials (id, organization_id, name, description, robots, version, \
         created_by, created_at, updated_by, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?8)",
        params![
            new.id,
            new.organization_id,
            new.name,
            new.description,
            robots_text(&new.robots),
            new.version,
            new.by,
            new.at
        ],
        "a credential with this id",
    )?;
    insert_values(conn, new)
}

fn replace(conn: &Connection, write: &CredentialWrite) -> Result<()> {
    let stored: Option<i64> = one(
        conn,
        "SELECT version FROM credentials WHERE organization_id = ?1 AND id = ?2",
        [&write.organization_id, &write.id],
        |row| crate::rows::RecordRow::int(row, "version"),
    )?;
    match stored {
        None => return Err(Error::NotFound),
        Some(version) if version + 1 != i64::from(write.version) => {
            return Err(Error::Conflict("a newer version of this credential"))
        }
        Some(_) => {}
    }
    change(
        conn,
        "UPDATE credentials SET description = ?1, robots = ?2, version = ?3, updated_by = ?4, \
         updated_at = ?5 WHERE organization_id = ?6 AND id = ?7",
        params![
            write.description,
            robots_text(&write.robots),
            write.version,
            write.by,
            write.at,
            write.organization_id,
            write.id
        ],
    )?;
    change(
        conn,
        "DELETE FROM credential_values WHERE credential_id = ?1",
        [&write.id],
    )?;
    insert_values(conn, write)
}

fn fields_of(conn: &Connection, organization_id: &str) -> Result<Vec<(String, String)>> {
    all(
        conn,
        "SELECT credential_id, field FROM credential_values WHERE organization_id = ?1",
        [organization_id],
        |row| {
            use crate::rows::RecordRow as _;
            Ok((row.text("credential_id")?, row.text("field")?))
        },
    )
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn create_credential(
        &self,
        new: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (new, audit) = (new.clone(), audit.cloned());
        self.write(move |conn| {
            create(conn, &new)?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn replace_credential(
        &self,
        write: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (write, audit) = (write.clone(), audit.cloned());
        self.write(move |conn| {
            replace(conn, &write)?;
            insert_audit(conn, audit.as_ref())
        })
        .await
    }

    async fn delete_credential(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let (organization_id, id, audit) =
            (organization_id.to_owned(), id.to_owned(), audit.cloned());
        self.write(move |conn| {
            change(
                conn,
                "DELETE FROM credential_values WHERE organization_id = ?1 AND credential_id = ?2",
                [&organization_id, &id],
            )?;
            delete_audited(conn, "credentials", &organization_id, &id, audit.as_ref())
        })
        .await
    }

    async fn get_credential(&self, organization_id: &str, id: &str) -> Result<Credential> {
        self.readers.with(|conn| {
            let credential = one(
                conn,
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
                     WHERE organization_id = ?1 AND id = ?2"
                ),
                [organization_id, id],
                |row| credential_from(row, Vec::new()),
            )?
            .ok_or(Error::NotFound)?;
            let fields = fields_of(conn, organization_id)?;
            Ok(credentials_with_fields(vec![credential], fields)
                .pop()
                .expect("one credential in, one out"))
        })
    }

    async fn list_credentials(&self, organization_id: &str) -> Result<Vec<Credential>> {
        let organization_id = organization_id.to_owned();
        self.read_blocking(move |conn| {
            let credentials = all(
                conn,
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
                     WHERE organization_id = ?1 ORDER BY name"
                ),
                [&organization_id],
                |row| credential_from(row, Vec::new()),
            )?;
            let fields = fields_of(conn, &organization_id)?;
            Ok(credentials_with_fields(credentials, fields))
        })
        .await
    }

    async fn sealed_credential(
        &self,
        organization_id: &str,
        name: &str,
    ) -> Result<SealedCredential> {
        self.readers.with(|conn| {
            let mut credential = one(
                conn,
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials \
                     WHERE organization_id = ?1 AND name = ?2"
                ),
                [organization_id, name],
                |row| credential_from(row, Vec::new()),
            )?
            .ok_or(Error::NotFound)?;
            let values: Vec<SealedValue> = all(
                conn,
                &format!(
                    "SELECT {SEALED_VALUE_COLUMNS} FROM credential_values \
                     WHERE organization_id = ?1 AND credential_id = ?2 ORDER BY field"
                ),
                [organization_id, &credential.id],
                |row| sealed_value_from(row),
            )?;
            credential.fields = values.iter().map(|v| v.field.clone()).collect();
            Ok(SealedCredential { credential, values })
        })
    }

    async fn vault_keys(&self) -> Result<Vec<VaultKey>> {
        self.readers.with(|conn| {
            all(
                conn,
                "SELECT key_id, check_value, created_at FROM vault_keys ORDER BY created_at, key_id",
                [],
                |row| vault_key_from(row),
            )
        })
    }

    async fn add_vault_key(&self, key: &VaultKey) -> Result<()> {
        let key = key.clone();
        self.write(move |conn| {
            change(
                conn,
                "INSERT INTO vault_keys (key_id, check_value, created_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id) DO NOTHING",
                params![key.key_id, key.check_value, key.created_at],
            )
            .map(drop)
        })
        .await
    }

    async fn remove_vault_key(&self, key_id: &str) -> Result<()> {
        let key_id = key_id.to_owned();
        self.write(move |conn| {
            change(conn, "DELETE FROM vault_keys WHERE key_id = ?1", [&key_id]).map(drop)
        })
        .await
    }

    async fn vault_holds_values(&self) -> Result<bool> {
        let pattern = format!("%{SEALED_VARIABLE_MARK}%");
        self.read_blocking(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM credential_values) \
                 OR EXISTS (SELECT 1 FROM executions WHERE variables LIKE ?1)",
                [&pattern],
                |row| row.get(0),
            )
            .map_err(other)
        })
        .await
    }

    async fn values_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<StoredValue>> {
        let key_id = key_id.to_owned();
        self.read_blocking(move |conn| {
            all(
                conn,
                &format!(
                    "SELECT credential_id, organization_id, version, {SEALED_VALUE_COLUMNS} \
                     FROM credential_values WHERE key_id <> ?1 ORDER BY credential_id, field LIMIT ?2"
                ),
                params![key_id, limit as i64],
                |row| stored_value_from(row),
            )
        })
        .await
    }

    async fn reseal_values(&self, changes: &[(StoredValue, SealedValue)]) -> Result<usize> {
        let changes = changes.to_vec();
        self.write(move |conn| {
            let mut written = 0;
            for (old, new) in &changes {
                written += change(
                    conn,
                    "UPDATE credential_values SET key_id = ?1, nonce = ?2, ciphertext = ?3 \
                     WHERE credential_id = ?4 AND field = ?5 AND version = ?6 AND key_id = ?7",
                    params![
                        new.key_id,
                        new.nonce,
                        new.ciphertext,
                        old.credential_id,
                        old.value.field,
                        old.version,
                        old.value.key_id
                    ],
                )?;
            }
            Ok(written)
        })
        .await
    }

    async fn sealed_variables_not_under(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<SealedVariables>> {
        let any = format!("%{SEALED_VARIABLE_MARK}%");
        let under_key = format!("%{SEALED_VARIABLE_MARK}{}%", sealed_variable_prefix(key_id));
        self.read_blocking(move |conn| {
            all(
                conn,
                "SELECT id, organization_id, variables FROM executions \
                 WHERE variables LIKE ?1 AND variables NOT LIKE ?2 ORDER BY id LIMIT ?3",
                params![any, under_key, limit as i64],
                |row| sealed_variables_from(row),
            )
        })
        .await
    }

    async fn reseal_variables(&self, old: &SealedVariables, new: &Value) -> Result<bool> {
        let (id, old_text, new_text) = (
            old.execution_id.clone(),
            old.stored_text.clone(),
            new.to_string(),
        );
        self.write(move |conn| {
            Ok(change(
                conn,
                "UPDATE executions SET variables = ?1 WHERE id = ?2 AND variables = ?3",
                params![new_text, id, old_text],
            )? == 1)
        })
        .await
    }
}
