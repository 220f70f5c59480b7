//! Settings of `kind: mysql` items (MySQL / MariaDB), under their
//! `mysql:` key:
//!
//! ```yaml
//! - name: shop-db
//!   kind: mysql
//!   mysql:
//!     socket: /run/mysqld/mysqld.sock     # or host + port
//!     user: root
//!     password_env: MYSQL_BACKUP_PASSWORD  # or defaults_file
//!     mode: physical                       # logical (default) | physical
//!     databases: [shop]                    # logical: default all
//!     timeout: 6h
//!     binlog:
//!       dir: /var/lib/mysql                # where the server writes binlogs
//!       pitr: 7d
//! ```

use std::path::PathBuf;
use std::time::Duration;

/// Physical (`mariadb-backup` stream) or logical (`mariadb-dump`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MysqlMode {
    /// `mariadb-dump` (default).
    #[default]
    Logical,
    /// `mariadb-backup --backup --stream=xbstream`.
    Physical,
}

/// Binlog archiving settings (`binlog:`) of a physical item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinlogConfig {
    /// Directory the server writes its binlogs (and `<base>.index`) to;
    /// `bunker mysql binlog-push --item` pushes its closed files.
    pub dir: Option<PathBuf>,
    /// Every point in time of this last span must stay recoverable.
    pub pitr: Option<Duration>,
}

/// Settings of a `mysql` item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MysqlConfig {
    /// Unix socket of the server.
    pub socket: Option<PathBuf>,
    /// Host name (TCP).
    pub host: Option<String>,
    /// Port (TCP).
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Environment variable holding the password (passed to the client
    /// programs as `MYSQL_PWD`).
    pub password_env: Option<String>,
    /// Option file read first by the client programs (`--defaults-file`).
    pub defaults_file: Option<PathBuf>,
    /// Logical or physical.
    pub mode: MysqlMode,
    /// Logical mode: the databases to dump (all when empty).
    pub databases: Vec<String>,
    /// Time limit of each `mariadb-dump` / `mariadb-backup` run.
    pub timeout: Option<Duration>,
    /// Binlog archive settings.
    pub binlog: BinlogConfig,
}

impl crate::model::Item {
    /// The settings of a `mysql` item (either mode); `None` for other kinds.
    pub fn mysql(&self) -> Option<&MysqlConfig> {
        match &self.source {
            crate::model::Source::Mysql(my) => Some(my),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Policy;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Policy, crate::PolicyError> {
        Policy::parse_with(text, "bunker.yaml", None, &|_| None)
    }

    #[test]
    fn mysql_items_parse_with_their_binlog_settings() {
        let text = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: db\n    kind: mysql\n    mysql: { socket: /run/mysqld/mysqld.sock, user: root, password_env: MYPW, mode: physical, timeout: 6h, binlog: { dir: /var/lib/mysql, pitr: 7d } }\n  - name: dump\n    kind: mysql\n    mysql: { host: db1, port: 3307, defaults_file: /etc/bunker/my.cnf, databases: [shop, crm] }\n";
        let p = parse(text).expect("valid");
        let my = p.items[0].mysql().expect("mysql");
        assert_eq!(p.items[0].kind().as_str(), "mysql");
        assert_eq!(my.mode, super::MysqlMode::Physical);
        assert_eq!(
            my.socket.as_deref(),
            Some(std::path::Path::new("/run/mysqld/mysqld.sock"))
        );
        assert_eq!(my.password_env.as_deref(), Some("MYPW"));
        assert_eq!(my.timeout, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(my.binlog.pitr, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(
            my.binlog.dir.as_deref(),
            Some(std::path::Path::new("/var/lib/mysql"))
        );
        let d = p.items[1].mysql().expect("mysql");
        assert_eq!(d.mode, super::MysqlMode::Logical);
        assert_eq!((d.host.as_deref(), d.port), (Some("db1"), Some(3307)));
        assert_eq!(d.databases, vec!["shop".to_string(), "crm".to_string()]);
        assert!(p.items[1].postgres().is_none());
    }

    #[test]
    fn bad_mysql_settings_are_reported_at_their_place() {
        let text = "repositories:\n  r: { location: /r, password_env: PW }\nitems:\n  - name: a\n    kind: mysql\n    mysql: { mode: hot, port: 0, sockett: /x }\n  - name: b\n    kind: mysql\n    mysql: { binlog: { pitr: 7d } }\n  - name: c\n    kind: mysql\n";
        let err = parse(text).expect_err("invalid");
        let lines: Vec<String> = err.diagnostics().iter().map(ToString::to_string).collect();
        let all = lines.join("\n");
        assert!(
            all.contains("invalid mode \"hot\" in mysql settings of item \"a\""),
            "{all}"
        );
        assert!(all.contains("invalid port 0"), "{all}");
        assert!(all.contains("sockett"), "{all}");
        assert!(
            all.contains(
                "\"binlog\" in mysql settings of item \"b\" only applies to mode: physical"
            ),
            "{all}"
        );
        assert!(
            all.contains("item \"c\" of kind mysql needs a \"mysql\" section"),
            "{all}"
        );
    }
}
