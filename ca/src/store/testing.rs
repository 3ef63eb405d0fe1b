//! Where a test's store lives: a temporary directory for the embedded
//! backends, a fresh database of the tests' PostgreSQL cluster for
//! PostgreSQL.

use super::{Backend, Location};

/// A place for one test's store; an embedded store's directory goes with it.
pub(crate) struct Place {
    location: Location,
    _dir: tempfile::TempDir,
}

impl Place {
    /// A new, empty place for a store of `backend`.
    pub(crate) fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = match backend {
            Backend::Postgres => {
                let url = super::postgres::cluster::fresh_database();
                Location::Postgres(Box::new(url.parse().unwrap()))
            }
            backend => Location::Embedded {
                backend,
                dir: dir.path().to_owned(),
            },
        };
        Self {
            location,
            _dir: dir,
        }
    }

    /// Where the store is.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }
}

/// Runs each named test function, which takes a [`Backend`], once per
/// backend: `mod redb`, `mod sled` and `mod postgres` of `#[test]`s.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $( #[test] fn $name() { super::$name(crate::store::Backend::Redb) } )*
        }
        mod sled {
            $( #[test] fn $name() { super::$name(crate::store::Backend::Sled) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(crate::store::Backend::Postgres) } )*
        }
    };
}
pub(crate) use on_every_backend;
