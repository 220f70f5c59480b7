//! What a request may do: authentication mode, roles, `--append-only` and
//! `--private-repos`.
//!
//! A user's role is the one the roles file gives them; users it does not
//! name (and the anonymous user of `--no-auth`) get `backup` under
//! `--append-only` and `admin` otherwise, which is restic rest-server's
//! behaviour. So `--append-only` plus a roles file naming one `admin` is the
//! "clients append, the pruner deletes" deployment (docs/serve.md).

use std::sync::Arc;

use bunker_storage::FileType;

use crate::auth::{Htpasswd, Role, Roles};
use crate::route::{Route, Target};

/// How users prove who they are.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Everyone is the anonymous user `""` (`--no-auth`).
    None,
    /// HTTP Basic authentication against an htpasswd file.
    Htpasswd(Arc<Htpasswd>),
}

/// The access policy of a server.
#[derive(Debug, Clone)]
pub struct Access {
    /// How users authenticate.
    pub auth: Auth,
    /// Explicit per-user roles.
    pub roles: Roles,
    /// Users without an explicit role may only append.
    pub append_only: bool,
    /// Non-admin users see only repositories under `/USER/`.
    pub private_repos: bool,
}

/// The operation a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// GET, HEAD and listings.
    Read,
    /// `POST ?create=true`.
    Create,
    /// POST of a file.
    Write,
    /// DELETE of a file.
    Delete,
}

impl Access {
    /// The role of an authenticated `user`.
    pub fn role_of(&self, user: &str) -> Role {
        self.roles.get(user).unwrap_or(if self.append_only {
            Role::Backup
        } else {
            Role::Admin
        })
    }

    /// `Ok` if `user` with `role` may do `op` on `route`, else the reason.
    /// Overwrites are decided later (they need the stored content).
    pub fn check(&self, user: &str, role: Role, op: Op, route: &Route) -> Result<(), String> {
        if self.private_repos
            && role != Role::Admin
            && route.repo.first().map(String::as_str) != Some(user)
        {
            return Err(format!(
                "private repositories: {user:?} may only use repositories under /{user}/"
            ));
        }
        let lock = matches!(route.target, Target::Object(FileType::Lock, _));
        let allowed = match op {
            Op::Read => true,
            Op::Create => role >= Role::Backup,
            Op::Write => lock || role >= Role::Backup,
            Op::Delete => lock || role >= Role::Admin,
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "role {} may not {} here{}",
                role.as_str(),
                match op {
                    Op::Read => "read",
                    Op::Create => "create repositories",
                    Op::Write => "write files",
                    Op::Delete => "delete files",
                },
                if self.append_only && op == Op::Delete {
                    " (the server is append-only: prune with an admin credential or on the storage host)"
                } else {
                    ""
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::parse;

    fn access(append_only: bool, private: bool, roles: &str) -> Access {
        Access {
            auth: Auth::None,
            roles: Roles::parse(roles).unwrap(),
            append_only,
            private_repos: private,
        }
    }

    #[test]
    fn append_only_denies_delete_but_not_locks() {
        let a = access(true, false, "");
        let role = a.role_of("anyone");
        assert_eq!(role, Role::Backup);
        let pack = parse("/r/data/abcd", false).unwrap();
        let lock = parse("/r/locks/abcd", false).unwrap();
        assert!(a.check("u", role, Op::Delete, &pack).is_err());
        assert!(a.check("u", role, Op::Delete, &lock).is_ok());
        assert!(a.check("u", role, Op::Write, &pack).is_ok());
        let e = a.check("u", role, Op::Delete, &pack).unwrap_err();
        assert!(e.contains("append-only"), "{e}");
    }

    #[test]
    fn roles_limit_and_admin_overrides_append_only() {
        let a = access(true, false, "pruner admin\nauditor restore");
        let pack = parse("/r/data/abcd", false).unwrap();
        let lock = parse("/r/locks/abcd", false).unwrap();
        assert!(a
            .check("pruner", a.role_of("pruner"), Op::Delete, &pack)
            .is_ok());
        let r = a.role_of("auditor");
        assert!(a.check("auditor", r, Op::Write, &pack).is_err());
        assert!(a.check("auditor", r, Op::Write, &lock).is_ok());
        assert!(a.check("auditor", r, Op::Read, &pack).is_ok());
        assert!(a
            .check("auditor", r, Op::Create, &parse("/r/", true).unwrap())
            .is_err());
        // Without --append-only unnamed users are admins, as in rest-server.
        let open = access(false, false, "");
        assert_eq!(open.role_of("x"), Role::Admin);
    }

    #[test]
    fn private_repos_isolate_users() {
        let a = access(false, true, "root admin");
        let alice = parse("/alice/repo/keys/ab", false).unwrap();
        let bob = parse("/bob/keys/ab", false).unwrap();
        assert!(a.check("alice", Role::Backup, Op::Read, &alice).is_ok());
        assert!(a.check("alice", Role::Backup, Op::Read, &bob).is_err());
        assert!(a
            .check(
                "alice",
                Role::Backup,
                Op::Read,
                &parse("/keys/ab", false).unwrap()
            )
            .is_err());
        assert!(a.check("root", Role::Admin, Op::Read, &bob).is_ok());
    }
}
