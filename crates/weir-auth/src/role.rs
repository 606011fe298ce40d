use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a token may do. `admin` ⊇ `operator` ⊇ `viewer`; `ingest` may only ingest (and `admin`
/// may do everything, ingest included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Ingest,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Ingest];

    /// Whether a token with this role may use a route that needs `needed`.
    pub fn covers(self, needed: Role) -> bool {
        matches!(
            (self, needed),
            (Role::Admin, _)
                | (Role::Operator, Role::Operator | Role::Viewer)
                | (Role::Viewer, Role::Viewer)
                | (Role::Ingest, Role::Ingest)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role `{s}`: expected admin, operator, viewer or ingest")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_as_the_contract_says() {
        use Role::*;
        let covered = |r: Role| {
            Role::ALL
                .into_iter()
                .filter(|n| r.covers(*n))
                .collect::<Vec<_>>()
        };
        assert_eq!(covered(Admin), vec![Admin, Operator, Viewer, Ingest]);
        assert_eq!(covered(Operator), vec![Operator, Viewer]);
        assert_eq!(covered(Viewer), vec![Viewer]);
        assert_eq!(covered(Ingest), vec![Ingest]);
    }

    #[test]
    fn roles_parse_by_name_only() {
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!(
            "root"
                .parse::<Role>()
                .unwrap_err()
                .contains("expected admin")
        );
    }
}
