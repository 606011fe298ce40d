use super::table::quote_table;
use crate::ConnectorError;
use crate::error::{redact_url, short_query};
use reqwest::{StatusCode, Url};
use std::fmt;
use std::io::Write as _;
use std::time::Duration;
use weir_types::{Record, RecordDecoder};

/// Configuration of a [`ClickHouseClient`].
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// The HTTP interface, e.g. `http://127.0.0.1:8124`. Credentials in the URL are moved to
    /// HTTP basic authentication.
    pub url: String,
    /// Database for unqualified table names; the server's default when `None`.
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Timeout of one request, from sending to the end of the answer. Default 30 s.
    pub timeout: Duration,
    /// Compress insert bodies with gzip (`Content-Encoding: gzip`). Default off: on a local
    /// network it costs more CPU than it saves.
    pub gzip: bool,
    /// For an `https://` URL: trust only the CA certificates of this PEM file (by default the
    /// system's roots). Refused with an `http://` URL.
    pub ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &redact_url(&self.url))
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("gzip", &self.gzip)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        ClickHouseConfig {
            url: url.into(),
            database: None,
            user: None,
            password: None,
            timeout: Duration::from_secs(30),
            gzip: false,
            ca_file: None,
        }
    }
}

/// The server's version, from `SELECT version()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The full text, e.g. `18.16.1` or `24.3.2.23`.
    pub text: String,
}

impl ServerVersion {
    /// Parses `major.minor[.patch[...]]`.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let text = text.trim();
        let mut parts = text.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(ServerVersion {
            major,
            minor,
            patch,
            text: text.to_string(),
        })
    }

    /// Whether the server is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// A client for ClickHouse's HTTP interface.
///
/// Plain HTTP rather than the official `clickhouse` crate: inserts are `JSONEachRow` bodies
/// that Weir already produces, errors come back as text with ClickHouse's code (which this
/// client classifies), and it works unchanged against the 18.16 server Debian packages, which
/// the official crate only reaches with its schema validation turned off.
///
/// Every query runs with `wait_end_of_query=1`, so an error is reported as an HTTP error
/// rather than after a partial answer, and 64-bit integers come back as JSON numbers.
///
/// ```no_run
/// # async fn run() -> Result<(), weir_connectors::ConnectorError> {
/// use weir_connectors::{ClickHouseClient, ClickHouseConfig};
/// let client = ClickHouseClient::new(ClickHouseConfig::new("http://127.0.0.1:8124"))?;
/// client.execute("CREATE TABLE IF NOT EXISTS t (n UInt32) ENGINE = MergeTree ORDER BY n").await?;
/// client.insert_json_each_row("t", b"{\"n\":1}\n{\"n\":2}\n").await?;
/// let rows = client.query_json("SELECT count() AS c FROM t").await?;
/// assert_eq!(rows[0].get("c").and_then(|v| v.as_i64()), Some(2));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClickHouseClient {
    http: reqwest::Client,
    endpoint: Url,
    shown_url: String,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    timeout: Duration,
    gzip: bool,
}

impl fmt::Debug for ClickHouseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClickHouseClient")
            .field("url", &self.shown_url)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl ClickHouseClient {
    /// Validates the configuration; connects lazily on the first request.
    pub fn new(config: ClickHouseConfig) -> Result<Self, ConnectorError> {
        let mut endpoint = Url::parse(&config.url).map_err(|e| ConnectorError::Config {
            key: "url",
            reason: format!("`{}` is not a URL: {e}", redact_url(&config.url)),
        })?;
        match endpoint.scheme() {
            "http" if config.ca_file.is_some() => {
                return Err(ConnectorError::Config {
                    key: "ca_file",
                    reason: format!(
                        "a CA file applies to https:// URLs only, and the URL is `{}`",
                        redact_url(&config.url)
                    ),
                });
            }
            "http" | "https" => {}
            other => {
                return Err(ConnectorError::Config {
                    key: "url",
                    reason: format!("expected an http:// URL, found scheme `{other}`"),
                });
            }
        }
        let mut user = config.user;
        let mut password = config.password;
        if !endpoint.username().is_empty() {
            user.get_or_insert_with(|| endpoint.username().to_string());
        }
        if let Some(p) = endpoint.password() {
            password.get_or_insert_with(|| p.to_string());
        }
        let _ = endpoint.set_username("");
        let _ = endpoint.set_password(None);
        endpoint.set_query(None);
        if config.timeout.is_zero() {
            return Err(ConnectorError::Config {
                key: "timeout",
                reason: "must be longer than zero".into(),
            });
        }
        let http = crate::tls::client_builder(config.ca_file.as_deref())
            .map_err(|e| ConnectorError::Config {
                key: "ca_file",
                reason: e.to_string(),
            })?
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            // ClickHouse closes idle keep-alive connections after 3 s by default; never reuse
            // one it may be closing.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| ConnectorError::Config {
                key: "url",
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(ClickHouseClient {
            shown_url: endpoint.to_string(),
            http,
            endpoint,
            database: config.database,
            user,
            password,
            timeout: config.timeout,
            gzip: config.gzip,
        })
    }

    /// The server URL without credentials.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Health check: `GET /ping`, which ClickHouse answers `Ok.` without running a query.
    pub async fn ping(&self) -> Result<(), ConnectorError> {
        const WHAT: &str = "GET /ping";
        let mut url = self.endpoint.clone();
        url.set_path("/ping");
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.transport_error(e, WHAT))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, WHAT))?;
        if status == StatusCode::OK && body.starts_with(b"Ok.") {
            Ok(())
        } else {
            Err(ConnectorError::ClickHouseHttp {
                status: status.as_u16(),
                body: short_query(&String::from_utf8_lossy(&body)),
                query: WHAT.into(),
            })
        }
    }

    /// `SELECT version()`.
    pub async fn version(&self) -> Result<ServerVersion, ConnectorError> {
        const SQL: &str = "SELECT version()";
        let body = self.post(SQL, None, &[]).await?;
        let text = String::from_utf8_lossy(&body);
        ServerVersion::parse(&text).ok_or_else(|| ConnectorError::ClickHouseResponse {
            query: SQL.into(),
            reason: format!("`{}` is not a version number", text.trim()),
        })
    }

    /// Runs a statement that returns nothing of interest (DDL, `ALTER`, `INSERT ... SELECT`).
    pub async fn execute(&self, sql: &str) -> Result<(), ConnectorError> {
        self.post(sql, None, &[]).await?;
        Ok(())
    }

    /// Runs a query and returns its rows as records (the whole answer is held in memory: for
    /// small results). The query must not name a `FORMAT`; `JSONEachRow` is used.
    pub async fn query_json(&self, sql: &str) -> Result<Vec<Record>, ConnectorError> {
        let body = self
            .post(sql, None, &[("default_format", "JSONEachRow")])
            .await?;
        let text = std::str::from_utf8(&body).map_err(|e| ConnectorError::ClickHouseResponse {
            query: short_query(sql),
            reason: format!("answer is not UTF-8: {e}"),
        })?;
        let mut decoder = RecordDecoder::default();
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                decoder
                    .decode(line)
                    .map_err(|e| ConnectorError::ClickHouseResponse {
                        query: short_query(sql),
                        reason: format!("row {} is not a JSON object: {e}", i + 1),
                    })
            })
            .collect()
    }

    /// Sends `rows` (JSON objects, one per line) as one `INSERT INTO table FORMAT JSONEachRow`.
    /// Datetimes may be RFC 3339 strings, `YYYY-MM-DD hh:mm:ss` or unix seconds
    /// (`date_time_input_format=best_effort`).
    pub async fn insert_json_each_row(
        &self,
        table: &str,
        rows: &[u8],
    ) -> Result<(), ConnectorError> {
        self.insert_with_settings(table, rows, &[]).await
    }

    pub(crate) async fn insert_with_settings(
        &self,
        table: &str,
        rows: &[u8],
        settings: &[(&str, &str)],
    ) -> Result<(), ConnectorError> {
        let sql = format!("INSERT INTO {} FORMAT JSONEachRow", quote_table(table));
        let mut params: Vec<(&str, &str)> = Vec::with_capacity(settings.len() + 1);
        params.push(("date_time_input_format", "best_effort"));
        params.extend_from_slice(settings);
        let (body, encoding) = if self.gzip {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(rows.len() / 4),
                flate2::Compression::fast(),
            );
            // Writing into a Vec cannot fail; if it ever did, send the rows uncompressed.
            match encoder.write_all(rows).and_then(|()| encoder.finish()) {
                Ok(compressed) => (compressed, Some("gzip")),
                Err(_) => (rows.to_vec(), None),
            }
        } else {
            (rows.to_vec(), None)
        };
        let data = InsertData { body, encoding };
        self.post(&sql, Some(data), &params).await.map(|_| ())
    }

    /// POSTs `sql` as the body, or, with `data` (an insert), `sql` in the URL (`query=`) and
    /// the data as the body.
    async fn post(
        &self,
        sql: &str,
        data: Option<InsertData>,
        params: &[(&str, &str)],
    ) -> Result<Vec<u8>, ConnectorError> {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(db) = &self.database {
                query.append_pair("database", db);
            }
            if data.is_some() {
                query.append_pair("query", sql);
            }
            query.append_pair("wait_end_of_query", "1");
            query.append_pair("output_format_json_quote_64bit_integers", "0");
            for (k, v) in params {
                query.append_pair(k, v);
            }
        }
        let mut request = self.http.post(url);
        match data {
            Some(InsertData { body, encoding }) => {
                request = request.body(body);
                if let Some(encoding) = encoding {
                    request = request.header(reqwest::header::CONTENT_ENCODING, encoding);
                }
            }
            None => request = request.body(sql.to_string()),
        }
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_deref());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(e, sql))?;
        let status = response.status();
        let code_header = response
            .headers()
            .get("X-ClickHouse-Exception-Code")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e, sql))?;
        if status == StatusCode::OK {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        match code_header.or_else(|| parse_error_code(&text)) {
            Some(code) => Err(ConnectorError::ClickHouseServer {
                code,
                message: clean_error_message(&text),
                query: short_query(sql),
            }),
            None => Err(ConnectorError::ClickHouseHttp {
                status: status.as_u16(),
                body: short_query(&text),
                query: short_query(sql),
            }),
        }
    }

    fn transport_error(&self, e: reqwest::Error, sql: &str) -> ConnectorError {
        let e = e.without_url();
        if e.is_timeout() {
            ConnectorError::ClickHouseTimeout {
                url: self.shown_url.clone(),
                query: short_query(sql),
                after: self.timeout,
            }
        } else if let Some(reason) = crate::tls::tls_failure(&e) {
            ConnectorError::Tls {
                connector: "ClickHouse",
                url: self.shown_url.clone(),
                reason,
            }
        } else {
            ConnectorError::ClickHouseConnection {
                url: self.shown_url.clone(),
                query: short_query(sql),
                source: e,
            }
        }
    }
}

/// The body of an insert, possibly compressed.
struct InsertData {
    body: Vec<u8>,
    encoding: Option<&'static str>,
}

/// `Code: 62, e.displayText() = ...` (18.x) or `Code: 62. DB::Exception: ...` (newer).
fn parse_error_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + "Code: ".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn clean_error_message(text: &str) -> String {
    let text = text.trim();
    let text = match text.find("DB::Exception: ") {
        Some(i) => &text[i + "DB::Exception: ".len()..],
        None => text,
    };
    let text = text
        .strip_suffix(", e.what() = DB::Exception")
        .unwrap_or(text);
    short_query(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_codes_of_old_and_new_servers() {
        let old = "Code: 60, e.displayText() = DB::Exception: Table default.nope doesn't exist., e.what() = DB::Exception\n";
        assert_eq!(parse_error_code(old), Some(60));
        assert_eq!(
            clean_error_message(old),
            "Table default.nope doesn't exist."
        );
        let new = "Code: 62. DB::Exception: Syntax error: failed at position 1. (SYNTAX_ERROR) (version 24.3.1)";
        assert_eq!(parse_error_code(new), Some(62));
        assert!(clean_error_message(new).starts_with("Syntax error"));
        assert_eq!(parse_error_code("Bad gateway"), None);
    }

    #[test]
    fn versions_compare() {
        let v = ServerVersion::parse("18.16.1\n").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (18, 16, 1));
        assert!(v.at_least(18, 16) && !v.at_least(19, 1));
        assert!(ServerVersion::parse("24.3.2.23").unwrap().at_least(20, 1));
        assert_eq!(ServerVersion::parse("x"), None);
    }

    #[test]
    fn credentials_leave_the_url() {
        let client =
            ClickHouseClient::new(ClickHouseConfig::new("http://bob:s3cret@127.0.0.1:8124/"))
                .unwrap();
        assert_eq!(client.url(), "http://127.0.0.1:8124/");
        assert_eq!(client.user.as_deref(), Some("bob"));
        assert!(!format!("{client:?}").contains("s3cret"));
        let e = ClickHouseClient::new(ClickHouseConfig::new("ftp://x")).unwrap_err();
        assert!(e.to_string().contains("`url`"), "{e}");
        let https = ClickHouseClient::new(ClickHouseConfig::new("https://127.0.0.1:8443"));
        assert!(https.is_ok(), "{https:?}");
    }
}
