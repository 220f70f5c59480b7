//! The EXAMPLES sections of the `mysql` subcommands' `--help`.

pub const BACKUP_EXAMPLES: &str = "\
EXAMPLES:
    bunker -r /srv/backup --password-file /etc/bunker/pw mysql backup --socket /run/mysqld/mysqld.sock --user root
    bunker mysql backup --defaults-file /etc/bunker/my.cnf --tag hourly --timeout 6h
    bunker snapshots --tag mysql-physical";

pub const RESTORE_EXAMPLES: &str = "\
EXAMPLES:
    The newest backup as it was taken, owned by mysql:
        bunker mysql restore --target-dir /var/lib/mysql-restored --owner mysql:mysql

    Point in time (the newest backup before it, then the archived binlogs up to it):
        bunker mysql restore --target-dir /srv/mysql/r --target-time '2024-05-01 10:00:00+00' --owner mysql

    Up to a binlog position, or up to a GTID:
        bunker mysql restore --target-dir /srv/mysql/r --target-position binlog.000042:1234
        bunker mysql restore --target-dir /srv/mysql/r --target-gtid 0-1-4711";

pub const PUSH_EXAMPLES: &str = "\
EXAMPLES:
    Every closed binlog file the server's index lists (run it every few minutes from cron or a timer):
        bunker mysql binlog-push --index /var/lib/mysql/binlog.index

    One file, by hand:
        bunker mysql binlog-push /var/lib/mysql/binlog.000042";

pub const VERIFY_EXAMPLES: &str = "\
EXAMPLES:
    bunker mysql binlog-verify
    bunker --json mysql binlog-verify";

pub const PRUNE_EXAMPLES: &str = "\
EXAMPLES:
    bunker mysql binlog-prune --dry-run     (list what would be deleted)
    bunker forget --tag mysql-physical --keep-last 30 && bunker mysql binlog-prune";

pub const DUMP_EXAMPLES: &str = "\
EXAMPLES:
    bunker mysql dump --socket /run/mysqld/mysqld.sock --user root      (all databases)
    bunker mysql dump -d shop --timeout 2h
    bunker snapshots --tag mysql-dump,mysql-db=shop";

pub const RESTORE_DUMP_EXAMPLES: &str = "\
EXAMPLES:
    bunker mysql restore-dump --from-db shop -d shop_copy        (the newest dump of shop)
    bunker mysql restore-dump 4f2a9c1e                           (an all-databases dump, as it was)
    bunker dump latest --tag mysql-dump /shop.sql | mariadb shop";
