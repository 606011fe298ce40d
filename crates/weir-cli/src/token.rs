//! `weir token`: the keys and bearer tokens of `weir serve` (see SERVE.md, "Authentication").

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use weir_auth::{KeyRing, Revocations, Role};

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Write a new random signing key to FILE (mode 600; an existing file is never replaced).
    Keygen { file: PathBuf },
    /// Print a new token on standard output (its id and expiry go to standard error).
    Create {
        /// admin, operator, viewer or ingest.
        #[arg(long)]
        role: String,
        /// How long the token is valid: `30m`, `1h`, `7d`.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Who the token is for (shown in the audit log).
        #[arg(long, default_value = "weir")]
        name: String,
        /// The signing key (never the key itself on the command line).
        #[arg(long, env = "WEIR_AUTH_KEY_FILE")]
        key_file: PathBuf,
    },
    /// Revoke a token by its id: the server refuses it from its next request on.
    Revoke {
        /// The token's id (`jti`), as `weir token create` printed it.
        id: String,
        /// The server's data directory.
        #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
        data_dir: PathBuf,
    },
}

const USAGE: u8 = 2;

pub fn run(args: TokenArgs) -> ExitCode {
    match args.command {
        TokenCommand::Keygen { file } => match weir_auth::generate_key(&file) {
            Ok(key) => {
                eprintln!(
                    "wrote a new signing key to {} (key id {}); keep it secret, e.g. WEIR_AUTH_KEY_FILE={}",
                    file.display(),
                    key.id(),
                    file.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(e, 1),
        },
        TokenCommand::Create {
            role,
            ttl,
            name,
            key_file,
        } => {
            let role: Role = match role.parse() {
                Ok(r) => r,
                Err(e) => return fail(format!("--role: {e}"), USAGE),
            };
            let ttl = match humantime::parse_duration(ttl.trim()) {
                Ok(d) if d >= Duration::from_secs(1) => d,
                Ok(_) => return fail("--ttl: at least 1s", USAGE),
                Err(e) => return fail(format!("--ttl `{ttl}`: {e} (e.g. 30m, 1h, 7d)"), USAGE),
            };
            let ring = match KeyRing::load(&key_file, &[]) {
                Ok(r) => r,
                Err(e) => return fail(e, USAGE),
            };
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match ring.issue(&name, role, ttl, now) {
                Ok((token, claims)) => {
                    println!("{token}");
                    eprintln!(
                        "token {} for `{}` with role {}, valid for {} (revoke: weir token revoke {})",
                        claims.jti,
                        claims.sub,
                        claims.role,
                        humantime::format_duration(ttl),
                        claims.jti
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e, 1),
            }
        }
        TokenCommand::Revoke { id, data_dir } => {
            let list = Revocations::in_data_dir(&data_dir);
            match list.revoke(&id) {
                Ok(()) => {
                    eprintln!("token {id} revoked (in {})", list.path().display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e, USAGE),
            }
        }
    }
}

fn fail(e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
