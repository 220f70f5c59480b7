//! The EXAMPLES sections of the `pg` subcommands' `--help`.

pub const PUSH_EXAMPLES: &str = "\
EXAMPLES:
    In postgresql.conf (`bunker pg archive-command --item NAME` prints these lines):
        archive_mode = on
        archive_command = '/usr/local/bin/bunker -r /srv/backup --password-file /etc/bunker/pw pg wal-push %p'

    By hand, from the data directory (what PostgreSQL runs):
        bunker -r /srv/backup --password-file /etc/bunker/pw pg wal-push pg_wal/000000010000000000000003";

pub const FETCH_EXAMPLES: &str = "\
EXAMPLES:
    In postgresql.conf or postgresql.auto.conf (`pg restore` writes it for you):
        restore_command = '/usr/local/bin/bunker -r /srv/backup --password-file /etc/bunker/pw pg wal-fetch %f %p'

    Copy one archived segment out, e.g. to inspect it with pg_waldump:
        bunker pg wal-fetch 000000010000000000000003 /tmp/000000010000000000000003";

pub const VERIFY_EXAMPLES: &str = "\
EXAMPLES:
    bunker pg wal-verify
    bunker pg wal-verify --pitr 7d
    bunker pg wal-verify --read-data             (also decrypt and hash every archived file)
    bunker pg wal-verify --config /etc/bunker/bunker.yaml --item db
    bunker --json pg wal-verify --pitr 14d";

pub const PRUNE_EXAMPLES: &str = "\
EXAMPLES:
    bunker pg wal-prune --dry-run      (list what would be deleted)
    bunker pg wal-prune
    bunker forget --config /etc/bunker/bunker.yaml --item db   (PITR-aware, for policy items)";

pub const ARCHIVE_EXAMPLES: &str = "\
EXAMPLES:
    bunker pg archive-command --config /etc/bunker/bunker.yaml --item db
    bunker pg archive-command --item db >> /etc/postgresql/15/main/conf.d/bunker.conf";

pub const RESTORE_EXAMPLES: &str = "\
EXAMPLES:
    Restore to a point in time, start the server and wait for the promotion (as postgres):
        bunker -r /srv/backup --password-file /etc/bunker/pw pg restore \\
            --target-dir /var/lib/postgresql/15/restored \\
            --target-time '2024-05-01 10:00:00+00' --port 5433 --no-archive --start --timeout 2h

    Restore the newest state (all archived WAL), to be started by hand:
        bunker pg restore --target-dir /srv/pg/restored
        pg_ctl -D /srv/pg/restored start

    A given base backup, up to a named restore point, with the programs of another version:
        bunker pg restore 4f2a9c1e --target-dir /srv/pg/r --target-name before_migration \\
            --start --pg-bin /usr/lib/postgresql/16/bin";

pub const BACKUP_EXAMPLES: &str = "\
EXAMPLES:
    bunker -r /srv/backup --password-file /etc/bunker/pw pg backup --pghost /var/run/postgresql --pguser postgres
    bunker pg backup --pghost db1.lan --pguser replicator --tag nightly --timeout 6h
    bunker pg backup --pghost standby1 --pguser replicator    (from a streaming standby)";

pub const DUMP_EXAMPLES: &str = "\
EXAMPLES:
    bunker pg dump --pghost /var/run/postgresql --pguser postgres      (every database and the globals)
    bunker pg dump -d app -d billing --globals --timeout 2h
    bunker snapshots --tag pg-dump,pg-db=app";

pub const RESTORE_DUMP_EXAMPLES: &str = "\
EXAMPLES:
    bunker pg restore-dump --from-db app -d app_copy           (the newest dump of app)
    bunker pg restore-dump 4f2a9c1e -d app --force              (drops and recreates app)
    bunker dump latest --tag pg-globals /globals.sql | psql -d postgres";
