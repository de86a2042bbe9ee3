//! Scratch PostgreSQL databases, one per test.

use crate::servers;

/// A database created for one test (or benchmark) and dropped when the guard goes away.
#[derive(Debug)]
pub struct ScratchDb {
    /// The database's name (`ktwin_test_<purpose>_<random>`).
    pub name: String,
    /// Its URL, on the server of [`servers::postgres_url`].
    pub url: String,
}

impl ScratchDb {
    /// Creates `ktwin_test_<purpose>_<random>` on the test server.
    ///
    /// # Panics
    /// When the server cannot be reached: the test needs it, and says where it looked.
    pub async fn create(purpose: &str) -> Self {
        let admin = servers::postgres_url();
        let name = format!("ktwin_test_{purpose}_{}", uuid::Uuid::new_v4().simple());
        let client = connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|err| panic!("creating database {name} at {admin}: {err}"));
        let url = database_url(&admin, &name);
        Self { name, url }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let admin = servers::postgres_url();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a helper thread gets a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let client = connect(&admin).await;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|err| err.to_string())
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!(
                "warning: scratch database {} was not dropped: {err}",
                self.name
            );
        }
    }
}

async fn connect(admin: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| {
            panic!("PostgreSQL at {admin} is required (scripts/test.sh starts it): {err}")
        });
    tokio::spawn(connection);
    client
}

/// `admin` (a `postgres://…/db[?query]` URL) with its database replaced by `name`.
fn database_url(admin: &str, name: &str) -> String {
    let (url, query) = admin
        .split_once('?')
        .map_or((admin, None), |(u, q)| (u, Some(q)));
    let authority_end = url.find("://").map_or(0, |scheme| scheme + 3);
    let base = match url[authority_end..].find('/') {
        Some(slash) => &url[..authority_end + slash],
        None => url,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://u@h/postgres?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "t1"), "postgres://u@h/t1");
    }
}
