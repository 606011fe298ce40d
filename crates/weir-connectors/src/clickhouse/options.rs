//! The YAML options of the ClickHouse sink, its build and its check.

use super::{ClickHouseConfig, ClickHouseSink, ClickHouseSinkConfig};
use crate::config::{CheckFailure, ConfigError, Context};
use crate::duration::Duration;
use serde::Deserialize;
use weir_core::Stream;
use weir_types::Record;

/// `sink: { type: clickhouse, url, table, ... }`: batched inserts, exactly once with
/// checkpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSinkOptions {
    /// The HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// The table (`name` or `db.name`).
    pub table: String,
    /// A registered schema: rows rendered by it, table created from it.
    pub schema: Option<String>,
    /// Create the table from the schema if missing (default true).
    pub create_table: Option<bool>,
    /// Most rows per insert (default 50000).
    pub batch_rows: Option<usize>,
    /// Without checkpoints, insert at least this often (default 1s).
    pub flush_interval: Option<Duration>,
    /// Retries of a failed insert (default 5).
    pub retries: Option<u32>,
    /// User name.
    pub user: Option<String>,
    /// The environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// With an `https://` URL: trust only the CA certificates of this PEM file (relative to
    /// the pipeline file; by default the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ClickHouseSinkOptions {
    /// The client's configuration (with the password read from `password_env`, `ca_file`
    /// resolved by `ctx`).
    pub fn client(&self, ctx: &dyn Context) -> Result<ClickHouseConfig, ConfigError> {
        let mut client = ClickHouseConfig::new(self.url.clone());
        client.user = self.user.clone();
        client.ca_file = self.ca_file.as_deref().map(|f| ctx.resolve(f));
        if let Some(var) = &self.password_env {
            if !weir_schema::env::is_variable_name(var) {
                // Not echoed: it may be the secret itself, pasted here by mistake.
                return Err(ConfigError::option(
                    "password_env",
                    "expected the name of an environment variable (letters, digits, `_`); the value given is not one, and is not shown as it may be a secret",
                ));
            }
            let password = std::env::var(var).map_err(|_| {
                ConfigError::option(
                    "password_env",
                    format!("the environment variable `{var}` is not set"),
                )
            })?;
            client.password = Some(password);
        }
        Ok(client)
    }

    /// The sink's configuration.
    pub fn config(&self, ctx: &dyn Context) -> Result<ClickHouseSinkConfig, ConfigError> {
        let mut config =
            ClickHouseSinkConfig::new(self.client(ctx)?, self.table.clone(), ctx.pipeline_name());
        if let Some(name) = &self.schema {
            config.schema = Some(ctx.schema("schema", name)?);
        }
        if let Some(create) = self.create_table {
            config.create_table = create;
        }
        if let Some(rows) = self.batch_rows {
            if rows == 0 {
                return Err(ConfigError::option("batch_rows", "must be at least 1"));
            }
            config.batch_rows = rows;
        }
        if let Some(d) = self.flush_interval {
            config.flush_interval = d.get();
        }
        if let Some(r) = self.retries {
            config.retries = r;
        }
        Ok(config)
    }
}

impl crate::config::SinkConnector for ClickHouseSinkOptions {
    fn build(
        &self,
        ctx: &dyn Context,
        name: &str,
        stream: &Stream<Record>,
    ) -> Result<(), ConfigError> {
        let config = self.config(ctx)?;
        stream.sink(name, move || ClickHouseSink::new(config.clone()));
        Ok(())
    }

    fn check(&self, ctx: &dyn Context) -> Result<bool, CheckFailure> {
        let config = self.config(ctx)?;
        crate::block_on(super::check(config.client))?;
        Ok(true)
    }

    fn destination(&self, _: &dyn Context) -> String {
        format!(
            "ClickHouse table {} at {}",
            self.table,
            crate::config::without_credentials(&self.url)
        )
    }
}
