//! The credentials vault on PostgreSQL: credentials, their sealed values, key
//! checks.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::{Postgres, Row, Transaction};

use super::audit::{delete_audited, insert_audit};
use super::{conflict_as, fetch_all, fetch_optional, other, PostgresStore, NO_ARGS};
use crate::credentials::{sealed_variable_prefix, SEALED_VARIABLE_MARK};
use crate::rows::{
    credential_from, credentials_with_fields, robots_text, sealed_value_from,
    sealed_variables_from, stored_value_from, vault_key_from, CREDENTIAL_COLUMNS,
    SEALED_VALUE_COLUMNS,
};
use crate::{
    AuditEntry, Credential, CredentialStore, CredentialWrite, Error, Result, SealedCredential,
    SealedVariables, StoredValue, VaultKey,
};

async fn insert_values(tx: &mut Transaction<'_, Postgres>, write: &CredentialWrite) -> Result<()> {
    for value in &write.values {
        sqlx::query(
            "INSERT INTO credential_values \
             (credential_id, organization_id, version, field, key_id, nonce, ciphertext) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&write.id)
        .bind(&write.organization_id)
        .bind(i64::from(write.version))
        .bind(&value.field)
        .bind(&value.key_id)
        .bind(&value.nonce)
        .bind(&value.ciphertext)
        .execute(&mut **tx)
        .await
        .map_err(other)?;
    }
    Ok(())
}

fn field_pair(row: &sqlx::postgres::PgRow) -> Result<(String, String)> {
    Ok((
        row.try_get("credential_id").map_err(other)?,
        row.try_get("field").map_err(other)?,
    ))
}

impl PostgresStore {
    async fn fields_of(&self, organization_id: &str) -> Result<Vec<(String, String)>> {
        fetch_all(
            &self.pool,
            "SELECT credential_id, field FROM credential_values WHERE organization_id = $1",
            &[organization_id],
            field_pair,
        )
        .await
    }
}

#[async_trait]
impl CredentialStore for PostgresStore {
    async fn create_credential(
        &self,
        new: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // The name is settled by the unique index: a concurrent create of the same
        // name waits here and then finds it taken.
        let inserted = sqlx::query(
            "INSERT INTO credentials (id, organization_id, name, description, robots, version, \
             created_by, created_at, updated_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $8) \
             ON CONFLICT (organization_id, name) DO NOTHING",
        )
        .bind(&new.id)
        .bind(&new.organization_id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(robots_text(&new.robots))
        .bind(i64::from(new.version))
        .bind(&new.by)
        .bind(new.at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_as("a credential with this id"))?;
        if inserted.rows_affected() == 0 {
            return Err(Error::Conflict("a credential with this name"));
        }
        insert_values(&mut tx, new).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn replace_credential(
        &self,
        write: &CredentialWrite,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        // Locked: two replacements are ordered, and the second finds the version moved.
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM credentials WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        )
        .bind(&write.organization_id)
        .bind(&write.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?;
        match stored {
            None => return Err(Error::NotFound),
            Some(version) if version + 1 != i64::from(write.version) => {
                return Err(Error::Conflict("a newer version of this credential"))
            }
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE credentials SET description = $1, robots = $2, version = $3, updated_by = $4, \
             updated_at = $5 WHERE organization_id = $6 AND id = $7",
        )
        .bind(&write.description)
        .bind(robots_text(&write.robots))
        .bind(i64::from(write.version))
        .bind(&write.by)
        .bind(write.at)
        .bind(&write.organization_id)
        .bind(&write.id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query("DELETE FROM credential_values WHERE credential_id = $1")
            .bind(&write.id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        insert_values(&mut tx, write).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn delete_credential(
        &self,
        organization_id: &str,
        id: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query(
            "DELETE FROM credential_values WHERE organization_id = $1 AND credential_id = $2",
        )
        .bind(organization_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        delete_audited(&mut tx, "credentials", organization_id, id, audit).await?;
        tx.commit().await.map_err(other)
    }

    async fn get_credential(&self, organization_id: &str, id: &str) -> Result<Credential> {
        let credential = fetch_optional(
            &self.pool,
            &format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE organization_id = $1 AND id = $2"
            ),
            &[organization_id, id],
            |row| credential_from(row, Vec::new()),
        )
        .await?
        .ok_or(Error::NotFound)?;
        let fields = self.fields_of(organization_id).await?;
        Ok(credentials_with_fields(vec![credential], fields)
            .pop()
            .expect("one credential in, one out"))
    }

    async fn list_credentials(&self, organization_id: &str) -> Result<Vec<Credential>> {
        // One snapshot, so that the fields match the credentials.
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE organization_id = $1 ORDER BY name"
        ))
        .bind(organization_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(other)?;
        let field_rows = sqlx::query(
            "SELECT credential_id, field FROM credential_values WHERE organization_id = $1",
        )
        .bind(organization_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        let credentials = rows
            .iter()
            .map(|row| credential_from(row, Vec::new()))
            .collect::<Result<_>>()?;
        let fields = field_rows.iter().map(field_pair).collect::<Result<_>>()?;
        Ok(credentials_with_fields(credentials, fields))
    }

    async fn sealed_credential(
        &self,
        organization_id: &str,
        name: &str,
    ) -> Result<SealedCredential> {
        // One snapshot: the values are all of the version read.
        let mut tx = self.pool.begin().await.map_err(other)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE organization_id = $1 AND name = $2"
        ))
        .bind(organization_id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(other)?
        .ok_or(Error::NotFound)?;
        let mut credential = credential_from(&row, Vec::new())?;
        let value_rows = sqlx::query(&format!(
            "SELECT {SEALED_VALUE_COLUMNS} FROM credential_values \
             WHERE organization_id = $1 AND credential_id = $2 ORDER BY field"
        ))
        .bind(organization_id)
        .bind(&credential.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        let values: Vec<_> = value_rows
            .iter()
            .map(sealed_value_from)
            .collect::<Result<_>>()?;
        credential.fields = values.iter().map(|v| v.field.clone()).collect();
        Ok(SealedCredential { credential, values })
    }

    async fn vault_keys(&self) -> Result<Vec<VaultKey>> {
        fetch_all(
            &self.pool,
            "SELECT key_id, check_value, created_at FROM vault_keys ORDER BY created_at, key_id",
            NO_ARGS,
            vault_key_from,
        )
        .await
    }

    async fn add_vault_key(&self, key: &VaultKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO vault_keys (key_id, check_value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&key.key_id)
        .bind(&key.check_value)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(())
    }

    async fn remove_vault_key(&self, key_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM vault_keys WHERE key_id = $1")
            .bind(key_id)
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn vault_holds_values(&self) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM credential_values) \
             OR EXISTS (SELECT 1 FROM executions WHERE variables LIKE $1)",
        )
        .bind(format!("%{SEALED_VARIABLE_MARK}%"))
        .fetch_one(&self.pool)
        .await
        .map_err(other)
    }

    async fn values_not_under(&self, key_id: &str, limit: usize) -> Result<Vec<StoredValue>> {
        let rows = sqlx::query(&format!(
            "SELECT credential_id, organization_id, version, {SEALED_VALUE_COLUMNS} \
             FROM credential_values WHERE key_id <> $1 ORDER BY credential_id, field LIMIT $2"
        ))
        .bind(key_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(stored_value_from).collect()
    }

    async fn reseal_values(&self, changes: &[(StoredValue, crate::SealedValue)]) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        let mut written = 0;
        for (old, new) in changes {
            written += sqlx::query(
                "UPDATE credential_values SET key_id = $1, nonce = $2, ciphertext = $3 \
                 WHERE credential_id = $4 AND field = $5 AND version = $6 AND key_id = $7",
            )
            .bind(&new.key_id)
            .bind(&new.nonce)
            .bind(&new.ciphertext)
            .bind(&old.credential_id)
            .bind(&old.value.field)
            .bind(i64::from(old.version))
            .bind(&old.value.key_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?
            .rows_affected() as usize;
        }
        tx.commit().await.map_err(other)?;
        Ok(written)
    }

    async fn sealed_variables_not_under(
        &self,
        key_id: &str,
        limit: usize,
    ) -> Result<Vec<SealedVariables>> {
        let rows = sqlx::query(
            "SELECT id, organization_id, variables FROM executions \
             WHERE variables LIKE $1 AND variables NOT LIKE $2 ORDER BY id LIMIT $3",
        )
        .bind(format!("%{SEALED_VARIABLE_MARK}%"))
        .bind(format!(
            "%{SEALED_VARIABLE_MARK}{}%",
            sealed_variable_prefix(key_id)
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(sealed_variables_from).collect()
    }

    async fn reseal_variables(&self, old: &SealedVariables, new: &Value) -> Result<bool> {
        let updated =
            sqlx::query("UPDATE executions SET variables = $1 WHERE id = $2 AND variables = $3")
                .bind(new.to_string())
                .bind(&old.execution_id)
                .bind(&old.stored_text)
                .execute(&self.pool)
                .await
                .map_err(other)?;
        Ok(updated.rows_affected() == 1)
    }
}
